"""Tencent OCR IDCardOCR: front and back merged, AdvancedInfo, warnings, errors."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest

from idbatch.domain import Verdict, WarningCode
from idbatch.providers import errors
from idbatch.providers.base import ImageSource, VerifyRequest
from idbatch.providers.tencent_ocr import TencentOcrProvider, parse_advanced_info
from tests.providers.conftest import SECRET_ID, Sim, card, identity

ACCOUNT = f"ocr:{SECRET_ID}"


def test_front_and_back_are_two_billed_calls_merged_into_one_result(sim: Sim) -> None:
    ident = identity()
    answer = sim.ocr().verify(sim.request(card(ident=ident), card("back", ident=ident)))
    r = answer.result
    assert r.verdict == Verdict.PASSED
    assert (r.name, r.sex, r.nation, r.address, r.id_number) == (
        ident.name,
        "男",
        ident.nation,
        ident.address,
        ident.id_number,
    )
    assert r.birth == ident.birth
    assert (r.authority, r.valid_from, r.valid_to) == (ident.authority, ident.valid_from, ident.valid_to)
    assert r.quality == 92
    assert [(c.side, c.billable) for c in answer.calls] == [("front", True), ("back", True)]
    assert sim.stats(ACCOUNT)["billable"] == 2


@pytest.mark.parametrize(
    ("variant", "side", "warning"),
    [
        ("photocopy", "front", WarningCode.PHOTOCOPY),
        ("bw_copy", "front", WarningCode.BW_COPY),
        ("screen_reshoot", "front", WarningCode.SCREEN_RESHOOT),
        ("photoshopped", "front", WarningCode.PHOTOSHOPPED),
        ("temporary_id", "front", WarningCode.TEMPORARY_ID),
        ("border_incomplete", "front", WarningCode.BORDER_INCOMPLETE),
        ("border_occluded", "front", WarningCode.BORDER_OCCLUDED),
        ("glare", "front", WarningCode.GLARE),
        ("electronic_id", "front", WarningCode.ELECTRONIC_ID),
        ("watermark", "front", WarningCode.WATERMARK),
        ("blur", "front", WarningCode.LOW_QUALITY),
        ("invalid_validity", "back", WarningCode.INVALID_VALIDITY),
        ("reversed_side", "front", WarningCode.REVERSED_SIDE),
    ],
)
def test_each_warning(sim: Sim, variant: str, side: str, warning: WarningCode) -> None:
    front = card(variants=[variant] if side == "front" else [])
    back = card("back", variants=[variant] if side == "back" else [])
    answer = sim.ocr().verify(sim.request(front, back))
    assert answer.result.verdict == Verdict.NEGATIVE
    assert warning in {w.code for w in answer.result.warnings}


def test_blur_without_the_quality_flag_is_image_blur(sim: Sim) -> None:
    answer = sim.ocr().verify(sim.request(card(variants=["blur"]), config={}))
    assert [w.code for w in answer.result.warnings] == [WarningCode.LOW_QUALITY]
    assert answer.calls[0].provider_code == "FailedOperation.ImageBlur"
    assert not answer.calls[0].billable


def test_a_back_image_sent_as_front_is_a_card_side_error(sim: Sim) -> None:
    answer = sim.ocr().verify(sim.request(card("back")))
    assert [w.code for w in answer.result.warnings] == [WarningCode.REVERSED_SIDE]


def test_expired_validity_is_parsed_for_the_local_check(sim: Sim) -> None:
    ident = identity()
    ident.valid_from, ident.valid_to = dt.date(2001, 5, 6), dt.date(2011, 5, 6)
    answer = sim.ocr().verify(sim.request(card(ident=ident), card("back", ident=ident)))
    assert answer.result.valid_to == dt.date(2011, 5, 6)


def test_long_term_validity(sim: Sim) -> None:
    ident = identity()
    ident.valid_to = None
    answer = sim.ocr().verify(sim.request(card(ident=ident), card("back", ident=ident)))
    assert answer.result.valid_long_term
    assert answer.result.valid_to is None


def test_a_failed_back_call_keeps_the_billed_front_call(sim: Sim) -> None:
    request = sim.request(card(), b"not an image")
    with pytest.raises(errors.ItemRejected) as info:
        sim.ocr().verify(request)
    assert info.value.side == "back"
    assert [(c.side, c.billable) for c in info.value.calls] == [("front", True)]


@pytest.mark.parametrize(
    ("faults", "cls"),
    [
        ({"rate_429": 1.0}, errors.RateLimited),
        ({"rate_5xx": 1.0}, errors.Unavailable),
        ({"rate_reset": 1.0}, errors.Unavailable),
        ({"arrears": [f"ocr:{SECRET_ID}"]}, errors.AccountBlocked),
    ],
)
def test_faults(sim: Sim, faults: dict[str, object], cls: type[errors.ProviderError]) -> None:
    sim.state.faults.update(faults)
    with pytest.raises(cls):
        sim.ocr().verify(sim.request(card()))
    assert sim.stats(ACCOUNT).get("billable", 0) == 0


def test_default_ocr_quota_is_twenty_per_second(sim: Sim) -> None:
    assert sim.state.quotas["ocr"] == 20
    assert sim.state.quotas["faceid"] == 100


# --- unit tests on recorded answers (httpx.MockTransport) ----------------------------


def _mock_provider(answers: list[dict[str, object]]) -> tuple[TencentOcrProvider, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"Response": answers[len(seen) - 1]})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    provider = TencentOcrProvider(
        client, base_url="https://ocr.tencentcloudapi.com", secret_id="id", secret_key="key"
    )
    return provider, seen


def _req(back: bool = False) -> VerifyRequest:
    data = card()
    back_src = ImageSource("b", "https://example.com/b.jpg") if back else None
    return VerifyRequest(1, ImageSource("f", None, lambda: data), back_src, {"copy_warn": True})


def test_seed_warning_list_and_advanced_info_string_are_understood() -> None:
    provider, seen = _mock_provider(
        [
            {
                "Name": "甲",
                "Birth": "1987/1/1",
                "IdNum": "",
                "AdvancedInfo": json.dumps({"WarnInfos": [-9100, -9107], "Quality": 40}),
                "RequestId": "r1",
            },
            {"ValidDate": "2010.07.21-2020.07.21", "Authority": "某公安局", "AdvancedInfo": "{}"},
        ]
    )
    answer = provider.verify(_req(back=True))
    codes = {w.code for w in answer.result.warnings}
    assert codes == {WarningCode.INVALID_VALIDITY, WarningCode.GLARE, WarningCode.LOW_QUALITY}
    assert answer.result.valid_from == dt.date(2010, 7, 21)
    assert answer.result.valid_to == dt.date(2020, 7, 21)
    front_body = json.loads(seen[0].content)
    assert front_body["CardSide"] == "FRONT"
    assert "ImageBase64" in front_body
    assert json.loads(front_body["Config"]) == {"CopyWarn": True}
    back_body = json.loads(seen[1].content)
    assert back_body == {
        "ImageUrl": "https://example.com/b.jpg",
        "CardSide": "BACK",
        "Config": '{"CopyWarn":true}',
    }
    assert seen[0].headers["X-TC-Action"] == "IDCardOCR"
    assert seen[0].headers["X-TC-Version"] == "2018-11-19"
    assert "/ocr/tc3_request" in seen[0].headers["Authorization"]


def test_advanced_info_that_is_not_json_is_treated_as_empty() -> None:
    assert parse_advanced_info("not json") == {}
    assert parse_advanced_info('{"WarnInfos":[-9104]}') == {"WarnInfos": [-9104]}


def test_an_error_envelope_is_classified_by_the_table() -> None:
    provider, _ = _mock_provider(
        [{"Error": {"Code": "ResourcesSoldOut.ChargeStatusException", "Message": "x"}, "RequestId": "r"}]
    )
    with pytest.raises(errors.AccountBlocked):
        provider.verify(_req())
