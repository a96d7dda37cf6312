"""Reading S3 upload events: AWS's and MinIO's notification shapes, and what an upload claims.

``parse_notification`` turns one SQS message body into the objects it says were
created. It accepts AWS's shape (``eventSource: aws:s3``, ``eventName:
ObjectCreated:Put``, also delivered through SNS), AWS's ``s3:TestEvent``, and MinIO's
(``eventSource: minio:s3``, ``eventName: s3:ObjectCreated:Put``, a top-level
``EventName``/``Key``, and the object's ``userMetadata`` carried in the record, which
spares a HEAD request). Anything else is a ``PoisonMessage`` whose text is the reason.

``claims_of`` / ``sidecar_claims`` (``idbatch.upload_claims``) read what an upload says
about its card; ``validated`` checks claims the listener read with the CSV producer's own
row validation, so an event-driven card is held to the manifest's rules.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from idbatch import fields
from idbatch.storage.base import ObjectInfo
from idbatch.storage.s3 import s3_url
from idbatch.upload_claims import CLAIM_KEYS, CONVENTION, SIDECAR_MAX_BYTES, claims_of, sidecar_claims
from producers.csv_manifest import ManifestRow, RowError, _validate

SIDECAR = re.compile(r"^(?P<ref>.+)\.json$", re.IGNORECASE)
_SOURCES = frozenset({"aws:s3", "minio:s3"})
ETAG_MAX = 128  # event_object.etag
__all__ = [
    "CLAIM_KEYS",
    "CONVENTION",
    "SIDECAR",
    "SIDECAR_MAX_BYTES",
    "PoisonMessage",
    "Upload",
    "claims_of",
    "parse_notification",
    "parse_records",
    "sidecar_claims",
    "validated",
]


class PoisonMessage(ValueError):
    """A message that can never become a job; the message text is the reason."""


@dataclass(frozen=True)
class Upload(ObjectInfo):
    """One created object named by an event. ``metadata`` is None when the event did not
    carry it (AWS): the listener then asks S3 with a HEAD request."""

    bucket: str = ""
    metadata: dict[str, str] | None = field(default=None, compare=False, hash=False)


def parse_notification(body: str, buckets: frozenset[str] = frozenset()) -> list[Upload]:
    """The objects created according to one SQS message body; raises PoisonMessage, also
    when any of its records is unusable (``parse_records`` keeps the usable ones)."""
    uploads, rejected = parse_records(body, buckets)
    if rejected:
        raise PoisonMessage(rejected[0])
    return uploads


def parse_records(body: str, buckets: frozenset[str] = frozenset()) -> tuple[list[Upload], list[str]]:
    """The objects created according to one SQS message body, and why each unusable
    record is unusable; raises PoisonMessage when the message itself is not an S3
    notification, or when none of its records is usable.

    ``buckets``, when given, are the only buckets whose events are trusted: a record
    naming another one is refused (anyone who can write to the queue could otherwise
    make us read and present any bucket this process can reach). A record is refused by
    itself, so the objects named beside it in the same message still become cards.
    """
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise PoisonMessage("message body is not JSON") from exc
    if isinstance(payload, dict) and payload.get("Type") == "Notification" and "Message" in payload:
        return parse_records(str(payload["Message"]), buckets)  # delivered through SNS
    if not isinstance(payload, dict):
        raise PoisonMessage("message body is not a JSON object")
    if payload.get("Event") == "s3:TestEvent":
        return [], []
    records = payload.get("Records")
    if not isinstance(records, list):
        raise PoisonMessage("not an S3 event notification (no Records)")
    uploads: list[Upload] = []
    rejected: list[str] = []
    for record in records:
        try:
            upload = _record(record, buckets)
        except PoisonMessage as exc:
            rejected.append(
                str(exc) if len(records) == 1 else f"record {len(uploads) + len(rejected) + 1}: {exc}"
            )
            continue
        if upload is not None:
            uploads.append(upload)
    if rejected and not uploads:
        raise PoisonMessage("; ".join(dict.fromkeys(rejected)))
    return uploads, rejected


def _record(record: Any, buckets: frozenset[str]) -> Upload | None:
    """One record's created object (None: not a creation); raises PoisonMessage (why not)."""
    if not isinstance(record, dict):
        raise PoisonMessage("malformed S3 record: not a JSON object")
    try:
        source = record.get("eventSource")
        if source not in _SOURCES:
            raise PoisonMessage(f"record from {str(source)[:64]!r}, not aws:s3 or minio:s3")
        name = str(record.get("eventName", ""))
        if not name.removeprefix("s3:").startswith("ObjectCreated:"):
            return None
        bucket = str(_field(record, "s3", "bucket", "name"))
        obj = _field(record, "s3", "object")
        raw_key = _field(record, "s3", "object", "key")
        if not isinstance(raw_key, str):
            raise PoisonMessage("malformed S3 record: s3.object.key is not a string")
        key = unquote_plus(raw_key)  # event keys are URL-encoded, spaces as "+"
        try:
            size = int(obj.get("size", 0))
        except (TypeError, ValueError, OverflowError) as exc:
            raise PoisonMessage("malformed S3 record: s3.object.size is not a whole number") from exc
        etag = str(obj.get("eTag", "")).strip('"')
        metadata = _user_metadata(obj.get("userMetadata")) if source == "minio:s3" else None
    except PoisonMessage:
        raise  # already says why
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
        raise PoisonMessage(f"malformed S3 record ({type(exc).__name__})") from exc
    if buckets and bucket not in buckets:
        raise PoisonMessage(f"event from bucket {bucket[:64]!r}, which this listener does not serve")
    # What the ledger cannot store must not reach it: one such value failed the whole
    # commit, and with it every message received beside it, on every redelivery.
    for what, value, limit in (("bucket name", bucket, 255), ("object key", key, fields.IMAGE_REF_MAX - 255)):
        if (why := fields.problem(value, limit)) is not None:
            raise PoisonMessage(f"{what} {why}")
    if fields.problem(etag, ETAG_MAX) is not None:
        raise PoisonMessage("object eTag is not a short printable string")
    if not 0 <= size < 2**63:
        raise PoisonMessage(f"object size {size} is out of range")
    return Upload(s3_url(bucket, key), key, size, etag, bucket=bucket, metadata=metadata)


def _field(record: dict[str, Any], *path: str) -> Any:
    """``record[path[0]][path[1]]…``; a missing or ill-typed step raises PoisonMessage naming it."""
    node: Any = record
    for depth, name in enumerate(path):
        if not isinstance(node, dict):
            raise PoisonMessage(f"malformed S3 record: {'.'.join(path[:depth])} is not an object")
        if name not in node:
            raise PoisonMessage(f"malformed S3 record: no {'.'.join(path[: depth + 1])}")
        node = node[name]
    return node


def _user_metadata(raw: Any) -> dict[str, str]:
    """MinIO's ``userMetadata`` (``X-Amz-Meta-Name``, ``content-type``...) as boto3 names it."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TypeError("userMetadata is not an object")
    out: dict[str, str] = {}
    for key, value in raw.items():
        lower = str(key).lower()
        if lower.startswith("x-amz-meta-"):
            out[lower.removeprefix("x-amz-meta-")] = str(value)
    return out


_COLUMNS = ["external_ref", "front_image", "name", "id_number"]
_INDEX = {name: i for i, name in enumerate(_COLUMNS)}


def validated(
    claims: dict[str, str],
    *,
    ref: str,
    image_url: str,
    where: str,
    allowed_private_hosts: list[str],
    s3_allowed: tuple[str, ...] | None,
) -> ManifestRow | RowError:
    """The claims checked exactly as a manifest row is (``producers.csv_manifest``).

    The reason of a refused claim names ``where`` (the object's metadata or sidecar) and
    the field instead of a manifest row and line.
    """
    values = [claims.get("external_ref", ref), image_url, claims.get("name", ""), claims.get("id_number", "")]
    checked = _validate(values, _COLUMNS, _INDEX, 0, 0, "utf-8", allowed_private_hosts, s3_allowed)
    if isinstance(checked, RowError):
        checked.reason = checked.reason.replace("row 0 (line 0), column ", f"{where}, field ", 1)
    return checked
