"""AceData adapter against httpx.MockTransport: request shape and the error table."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from idbatch.domain import Verdict, WarningCode
from idbatch.providers import errors
from idbatch.providers.acedata import HTTP_ERRORS, AceDataProvider
from idbatch.providers.base import ImageSource, VerifyRequest
from idbatch.providers.tencent_codes import FACEID_ERRORS, FACEID_OUTCOMES

SUCCESS = {
    "sim": 99.76,
    "result": "Success",
    "description": "成功",
    "name": "测试",
    "sex": "男",
    "nation": "汉",
    "birth": "1987/1/1",
    "address": "测试地址",
    "id_num": "110101198701010016",
    "portrait": "/9j/" + "A" * 200,
    "warnings": "",
    "quality": 0,
    "encryption": None,
}


def provider(handler: Callable[[httpx.Request], httpx.Response]) -> AceDataProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return AceDataProvider(client, base_url="https://api.acedata.test", token="tok")


def request(config: dict[str, Any] | None = None) -> VerifyRequest:
    return VerifyRequest(
        job_id=1, front=ImageSource(ref="a.jpg", url="https://img.test/a.jpg"), config=config or {}
    )


def respond(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return lambda _req: httpx.Response(status, json=body, headers=headers)


def test_request_carries_bearer_token_url_and_config() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json=SUCCESS)

    answer = provider(handler).verify(request({"copy_warn": True, "unknown": 1}))
    (req,) = seen
    assert req.url == "https://api.acedata.test/identity/idcard/check-1e"
    assert req.headers["authorization"] == "Bearer tok"
    assert json.loads(req.content) == {"image_url": "https://img.test/a.jpg", "config": {"copy_warn": True}}
    assert answer.result.verdict == Verdict.PASSED
    assert answer.result.id_number == "110101198701010016"
    assert answer.result.birth is not None and answer.result.birth.isoformat() == "1987-01-01"
    assert answer.calls[0].billable and answer.calls[0].handoff == "url"


def test_low_similarity_success_is_negative() -> None:
    answer = provider(respond(200, {**SUCCESS, "sim": 42.0})).verify(request())
    assert answer.result.verdict == Verdict.NEGATIVE
    assert [w.code for w in answer.result.warnings] == [WarningCode.LOW_SIMILARITY]


def test_ocr_warning_codes_are_normalized() -> None:
    body = {**SUCCESS, "result": "FailedOperation.OcrWarningOccurred", "warnings": "-9102,-9106", "sim": 0}
    answer = provider(respond(200, body)).verify(request())
    assert answer.result.verdict == Verdict.NEGATIVE
    assert {(w.code, w.provider_code) for w in answer.result.warnings} == {
        (WarningCode.PHOTOCOPY, "-9102"),
        (WarningCode.PHOTOSHOPPED, "-9106"),
    }


@pytest.mark.parametrize("code", sorted(FACEID_OUTCOMES))
def test_every_business_outcome_is_an_answer(code: str) -> None:
    answer = provider(respond(200, {**SUCCESS, "result": code})).verify(request())
    assert answer.calls[0].billable
    expected = Verdict.PASSED if code == "Success" else Verdict.NEGATIVE
    assert answer.result.verdict == expected


@pytest.mark.parametrize(("code", "cls"), sorted(FACEID_ERRORS.items()))
def test_every_business_error_is_classified(code: str, cls: type[errors.ProviderError]) -> None:
    with pytest.raises(cls) as err:
        provider(respond(200, {**SUCCESS, "result": code})).verify(request())
    assert err.value.provider_code == code and not err.value.billable


@pytest.mark.parametrize(("key", "cls"), sorted(HTTP_ERRORS.items(), key=str))
def test_every_documented_http_error(key: tuple[int, str | None], cls: type[errors.ProviderError]) -> None:
    status, code = key
    body = {"success": False, "error": {"code": code or "other", "message": "m"}, "trace_id": "t-1"}
    with pytest.raises(cls) as err:
        provider(respond(status, body)).verify(request())
    assert err.value.http_status == status and err.value.request_id == "t-1"


def test_429_carries_retry_after() -> None:
    body = {"success": False, "error": {"code": "too_many_requests", "message": "slow"}}
    with pytest.raises(errors.RateLimited) as err:
        provider(respond(429, body, {"Retry-After": "3"})).verify(request())
    assert err.value.retry_after_s == 3.0


def test_transport_failures_are_retryable() -> None:
    def boom(_req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(errors.Unavailable):
        provider(boom).verify(request())

    def slow(_req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    with pytest.raises(errors.Unavailable, match="timeout"):
        provider(slow).verify(request())


def test_undocumented_result_code_is_not_mistaken_for_an_answer() -> None:
    with pytest.raises(errors.Unavailable, match="undocumented"):
        provider(respond(200, {**SUCCESS, "result": "Something.New"})).verify(request())


def test_unknown_5xx_and_4xx() -> None:
    with pytest.raises(errors.Unavailable):
        provider(respond(503, {})).verify(request())
    with pytest.raises(errors.ItemRejected):
        provider(respond(422, {})).verify(request())
