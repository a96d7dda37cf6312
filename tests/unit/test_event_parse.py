"""Upload events (issue 19): MinIO's notification shape, claims from metadata and sidecars,
validated like manifest rows, and routing rules."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from idbatch.event_routes import EventRoute, route_for
from producers.csv_manifest import ManifestRow, RowError
from producers.event_parse import PoisonMessage, claims_of, parse_notification, sidecar_claims, validated

MINIO = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "uploads/kyc/%E5%BC%A0-front.jpg",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "eventName": "s3:ObjectCreated:Put",
            "s3": {
                "bucket": {"name": "uploads", "arn": "arn:aws:s3:::uploads"},
                "object": {
                    "key": "kyc%2F%E5%BC%A0-front.jpg",
                    "size": 1234,
                    "eTag": "0123abcd",
                    "contentType": "image/jpeg",
                    "userMetadata": {"content-type": "image/jpeg", "X-Amz-Meta-Route": "ocr"},
                },
            },
        }
    ],
}


def test_minio_events_parse_with_their_metadata() -> None:
    (up,) = parse_notification(json.dumps(MINIO))
    assert (up.bucket, up.key, up.size, up.etag) == ("uploads", "kyc/张-front.jpg", 1234, "0123abcd")
    assert up.metadata == {"route": "ocr"}  # carried by the event: no HEAD needed


def test_aws_events_carry_no_metadata_and_other_sources_are_poison() -> None:
    record = json.loads(json.dumps(MINIO["Records"][0]))
    record["eventSource"], record["eventName"] = "aws:s3", "ObjectCreated:Put"
    (up,) = parse_notification(json.dumps({"Records": [record]}))
    assert up.metadata is None
    record["eventSource"] = "evil:s3"
    with pytest.raises(PoisonMessage, match="not aws:s3 or minio:s3"):
        parse_notification(json.dumps({"Records": [record]}))


def test_metadata_claims_decode_rfc2047_words() -> None:
    meta = {"name": "=?UTF-8?B?5byg5LiJ?=", "id-number": "11010519491231002X", "color": "red"}
    assert claims_of(meta) == {"name": "张三", "id_number": "11010519491231002X"}


def test_claims_are_validated_like_manifest_rows() -> None:
    ok = validated(
        {"name": "张三", "id_number": "11010519491231002x"},
        ref="C1",
        image_url="s3://b/C1-front.jpg",
        where="metadata of C1-front.jpg",
        allowed_private_hosts=[],
        s3_allowed=None,
    )
    assert isinstance(ok, ManifestRow) and ok.id_number == "11010519491231002X" and ok.external_ref == "C1"
    bad = validated(
        {"id_number": "110105194912310021"},
        ref="C1",
        image_url="s3://b/C1-front.jpg",
        where="metadata of C1-front.jpg",
        allowed_private_hosts=[],
        s3_allowed=None,
    )
    assert isinstance(bad, RowError)
    assert bad.reason.startswith("metadata of C1-front.jpg, field id_number:")
    assert "110105194912310021" not in bad.reason


def test_sidecar_claims_refuse_what_is_not_a_json_object_of_strings() -> None:
    assert sidecar_claims(json.dumps({"name": "李四", "route": "faceid"}).encode()) == {
        "name": "李四",
        "route": "faceid",
    }
    for body in (b"\xff\xfe", b"[1]", json.dumps({"name": 5}).encode()):
        with pytest.raises(ValueError, match="sidecar"):
            sidecar_claims(body)


def test_routes_match_by_prefix_and_routing_key_first_rule_wins() -> None:
    routes = [
        EventRoute(prefix="uploads/ocr/", provider="tencent_ocr", batch="ocr"),
        EventRoute(route="faceid", provider="tencent_faceid", batch="face"),
        EventRoute(prefix="uploads/", route="faceid", provider="acedata", batch="never"),
    ]
    assert route_for(routes, "uploads", "ocr/a-front.jpg", None) is routes[0]
    assert route_for(routes, "uploads", "x/a-front.jpg", "faceid") is routes[1]
    assert route_for(routes, "uploads", "x/a-front.jpg", None) is None
    with pytest.raises(ValidationError):
        EventRoute(provider="acedata", batch="b")  # matches nothing


def _side(key: str) -> str | None:
    from idbatch.settings import Settings
    from producers.event_parse import Upload
    from producers.event_sides import SideReader

    reader = SideReader(Settings(), None, 7)  # no rule routes by key: no S3 request, no batch lookup
    side = reader.side(Upload(f"s3://up/{key}", key, 100, "e1", bucket="up"))
    assert side.batch_id == 7
    return side.problem


def test_a_key_with_a_control_character_or_an_overlong_ref_is_refused_at_ingest() -> None:
    """The card reference comes from the key when no claim names one: held to the same rules."""
    assert _side("in/C1-front.jpg") is None
    assert _side("in/ESC\x1b[2J-front.jpg") == "object key contains a control character (U+001B)"
    assert _side("in/TAB\tx.jpg") == "object key contains a control character (U+0009)"  # not paired either
    assert _side("in/" + "L" * 300 + "-front.jpg") == "object key's card reference is over 256 characters"


def test_a_rejected_rows_kept_reference_carries_no_control_character() -> None:
    from idbatch.fields import storable

    assert storable("R\x1b[2J\tX\x00", 256) == "R\ufffd[2J\ufffdX\ufffd"
    assert storable("张三 R-1", 256) == "张三 R-1"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (None, "malformed S3 record: not a JSON object"),
        (5, "malformed S3 record: not a JSON object"),
        ({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}, "malformed S3 record: no s3"),
        ({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "up"}}},
         "malformed S3 record: no s3.object"),
        ({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"bucket": [], "object": {}}},
         "malformed S3 record: s3.bucket is not an object"),
        ({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
          "s3": {"bucket": {"name": "up"}, "object": {"key": 7}}},
         "malformed S3 record: s3.object.key is not a string"),
        ({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
          "s3": {"bucket": {"name": "up"}, "object": {"key": "a.jpg", "size": "big"}}},
         "malformed S3 record: s3.object.size is not a whole number"),
    ],
)  # fmt: skip
def test_a_malformed_record_names_what_is_missing_or_wrong(record: object, reason: str) -> None:
    with pytest.raises(PoisonMessage) as caught:
        parse_notification(json.dumps({"Records": [record]}))
    assert str(caught.value) == reason
