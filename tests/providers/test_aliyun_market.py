"""Aliyun-marketplace ID card OCR: APPCODE, JSON body, result fields, gateway vs vendor errors."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from PIL import Image

from idbatch.domain import Verdict, WarningCode
from idbatch.providers import errors
from idbatch.providers.aliyun_market import AliyunMarketProvider
from idbatch.providers.base import ImageSource, VerifyRequest
from tests.providers.conftest import APPCODE, Sim, card, identity

ACCOUNT = f"aliyun:{APPCODE}"


def test_front_and_back_are_recognized_and_billed(sim: Sim) -> None:
    ident = identity()
    answer = sim.aliyun().verify(sim.request(card(ident=ident), card("back", ident=ident)))
    r = answer.result
    assert r.verdict == Verdict.PASSED, r.warnings
    assert (r.name, r.sex, r.id_number, r.birth) == (ident.name, "男", ident.id_number, ident.birth)
    assert (r.authority, r.valid_from, r.valid_to) == (ident.authority, ident.valid_from, ident.valid_to)
    assert [c.billable for c in answer.calls] == [True, True]
    assert sim.stats(ACCOUNT)["billable"] == 2


@pytest.mark.parametrize(
    ("variant", "warning"),
    [
        ("photocopy", WarningCode.PHOTOCOPY),
        ("bw_copy", WarningCode.PHOTOCOPY),
        ("temporary_id", WarningCode.TEMPORARY_ID),
        ("screen_reshoot", WarningCode.SCREEN_RESHOOT),
        ("photoshopped", WarningCode.PHOTOSHOPPED),
        ("blur", WarningCode.LOW_QUALITY),
        ("glare", WarningCode.OVER_EXPOSURE),
        ("reversed_side", WarningCode.REVERSED_SIDE),
    ],
)
def test_each_warning(sim: Sim, variant: str, warning: WarningCode) -> None:
    answer = sim.aliyun().verify(sim.request(card(variants=[variant])))
    assert answer.result.verdict == Verdict.NEGATIVE
    assert warning in {w.code for w in answer.result.warnings}


def test_risk_is_only_reported_when_asked(sim: Sim) -> None:
    answer = sim.aliyun().verify(sim.request(card(variants=["photocopy"]), config={}))
    assert answer.result.verdict == Verdict.PASSED


def test_not_an_id_card(sim: Sim) -> None:
    from simulator.cards import render

    answer = sim.aliyun().verify(sim.request(render(None)))
    assert [w.code for w in answer.result.warnings] == [WarningCode.NOT_ID_CARD]


def test_url_handoff(sim: Sim) -> None:
    answer = sim.aliyun(handoff="url").verify(sim.request(card()))
    assert answer.calls[0].handoff == "url"
    assert answer.result.verdict == Verdict.PASSED


def test_a_url_the_vendor_cannot_download_is_retryable(sim: Sim) -> None:
    request = VerifyRequest(1, ImageSource("x", sim.images.url + "/img/missing.jpg"))
    with pytest.raises(errors.Unavailable) as info:
        sim.aliyun().verify(request)
    assert info.value.http_status == 462


def test_an_unreadable_image_by_url_is_rejected(sim: Sim) -> None:
    with pytest.raises(errors.ItemRejected) as info:
        sim.aliyun().verify(sim.request(b"garbage", as_url=True))
    assert info.value.http_status == 462


def test_a_too_long_image_is_downscaled_to_4096_before_sending(sim: Sim) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (5000, 300), (200, 200, 200)).save(buf, "PNG")
    answer = sim.aliyun().verify(sim.request(buf.getvalue()))
    assert [w.code for w in answer.result.warnings] == [WarningCode.NOT_ID_CARD]  # sent, not refused


@pytest.mark.parametrize(
    ("faults", "cls", "status"),
    [
        ({"rate_429": 1.0}, errors.RateLimited, 403),
        ({"rate_450": 1.0}, errors.RateLimited, 450),
        ({"rate_5xx": 1.0}, errors.Unavailable, 502),
        ({"outage_s": 60}, errors.Unavailable, 503),
        ({"arrears": [ACCOUNT]}, errors.AccountBlocked, 403),
        ({"rate_reset": 1.0}, errors.Unavailable, None),
    ],
)
def test_faults(
    sim: Sim, faults: dict[str, object], cls: type[errors.ProviderError], status: int | None
) -> None:
    sim.state.faults.update(faults)
    with pytest.raises(cls) as info:
        sim.aliyun().verify(sim.request(card()))
    assert type(info.value) is cls
    assert info.value.http_status == status
    assert sim.stats(ACCOUNT).get("billable", 0) == 0


def test_gateway_throttling_over_the_account_rate(sim: Sim) -> None:
    sim.state.quotas["aliyun"] = 0  # a zero quota refuses every call: no timing involved
    with pytest.raises(errors.RateLimited) as info:
        sim.aliyun().verify(sim.request(card()))
    assert "Throttled by APP Flow Control" in info.value.message


def test_a_wrong_appcode_blocks_the_account(sim: Sim) -> None:
    with pytest.raises(errors.AccountBlocked):
        sim.aliyun(appcode="nope").verify(sim.request(card()))


# --- unit: request shape (httpx.MockTransport) -----------------------------------------


def test_request_is_an_appcode_json_body_with_the_documented_parameters() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"image_status": "normal", "msg": {"valid": True}, "log_id": 2**64 - 1}
        )

    provider = AliyunMarketProvider(
        httpx.Client(transport=httpx.MockTransport(handler)), base_url="https://h", appcode="abc"
    )
    data = card()
    answer = provider.verify(
        VerifyRequest(1, ImageSource("f", None, lambda: data), None, {"copy_warn": True})
    )
    assert answer.calls[0].request_id == str(2**64 - 1)  # the vendor's log_id, exact
    request = seen[0]
    assert request.headers["Authorization"] == "APPCODE abc"
    assert request.headers["content-type"] == "application/json"
    form = json.loads(request.content)  # seed 004_'s 460/461 describe a JSON body
    assert form["id_card_side"] == "front"
    assert (form["detect_risk"], form["detect_direction"], form["detect_photo"]) == ("true", "true", "false")
    assert len(form["image"]) > 100
    assert not form["image"].startswith("data:")
