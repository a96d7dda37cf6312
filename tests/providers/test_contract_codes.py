"""Contract: every documented code of every seed, driven through idbatch's adapters over real HTTP.

For each code of ``simulator.codes`` (copied from the seeds, not from the adapters) a
``next`` knob makes the simulator answer it once, with the documented status, headers and
body; the adapter must read it as this file expects. The expectations are written here
and in ``test_error_tables`` from the seeds' descriptions, so a code that travels in the
wrong place, a body the adapter cannot read, or a classification that depends on an
undocumented field fails here. ``tests/simulator/test_codes_table.py`` builds the table of
docs/simulator.md from the same lists and these tests' names.
"""

from __future__ import annotations

import functools

import httpx
import pytest

from idbatch.domain import Verdict, WarningCode
from idbatch.providers import errors
from idbatch.providers.aliyun_market import AliyunMarketProvider
from idbatch.providers.base import ImageSource, ProviderAnswer, VerifyRequest
from simulator import codes
from tests.providers.conftest import ACEDATA_TOKEN, APPCODE, SECRET_ID, Sim, card
from tests.providers.test_error_tables import (
    ACEDATA_SEED,
    ALIYUN_GATEWAY,
    FACEID_SEED,
    OCR_SEED,
)

RateLimited, Unavailable = errors.RateLimited, errors.Unavailable
ItemRejected, AccountBlocked = errors.ItemRejected, errors.AccountBlocked
Expected = type[errors.ProviderError] | WarningCode | str  # "outcome": a FaceID answer

# PROVIDERS.md's common codes, read from their names: the account's or configuration's
# problem blocks the account, a frequency limit backs off, the item's fault rejects it.
TENCENT_COMMON: dict[str, type[errors.ProviderError]] = {
    "AuthFailure.SignatureFailure": AccountBlocked,
    "AuthFailure.SignatureExpire": AccountBlocked,
    "AuthFailure.SecretIdNotFound": AccountBlocked,
    "AuthFailure.InvalidSecretId": AccountBlocked,
    "AuthFailure.TokenFailure": AccountBlocked,
    "AuthFailure.InvalidAuthorization": AccountBlocked,
    "AuthFailure.UnauthorizedOperation": AccountBlocked,
    "RequestLimitExceeded": RateLimited,
    "RequestLimitExceeded.UinLimitExceeded": RateLimited,
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded": RateLimited,
    "InternalError": Unavailable,
    "InvalidParameter": ItemRejected,
    "InvalidParameterValue": ItemRejected,
    "MissingParameter": ItemRejected,
    "LimitExceeded": AccountBlocked,
    "ResourceUnavailable.InArrears": AccountBlocked,
    "ResourceUnavailable.ResourcePackageRunOut": AccountBlocked,
    "UnauthorizedOperation": AccountBlocked,
    "InvalidAction": AccountBlocked,
    "NoSuchVersion": AccountBlocked,
    "UnsupportedOperation": ItemRejected,
}


def aliyun_expected(status: int, message: str) -> Expected:
    """Seed 004_'s table: what each status (and, for 462/464, message) means for a card."""
    if status == 462:
        return Unavailable if "download image from url error" in message else ItemRejected
    if status == 464:
        return Unavailable if "runtime exception" in message else WarningCode.OCR_FAILED
    return {
        400: AccountBlocked,  # Invalid URL: our endpoint setting is wrong
        403: AccountBlocked,  # not purchased or used up
        408: Unavailable,
        413: ItemRejected,
        450: RateLimited,  # queue full, "retry"
        460: ItemRejected,
        461: ItemRejected,
        463: WarningCode.NOT_ID_CARD,
        469: Unavailable,
        502: Unavailable,
        503: Unavailable,
    }[status]


# Only what the seeds list (test_error_tables also covers OcrWarningOccurred, a Result that
# seed 002_'s example shows but its error table does not, and an undocumented 403).
_ALL: dict[str, Expected] = {**TENCENT_COMMON, **FACEID_SEED}
FACEID: dict[str, Expected] = {c.code: _ALL[c.code] for c in codes.FACEID_CODES + codes.COMMON_CODES}
OCR: dict[str, Expected] = {**TENCENT_COMMON, **OCR_SEED}
ACEDATA: dict[str, Expected] = {code: cls for _, code, cls in ACEDATA_SEED}
GATEWAY: dict[str, Expected] = {m: cls for _, m, cls in ALIYUN_GATEWAY if m in codes.GATEWAY_ANSWERS}
ALIYUN_CASES = [(s, m) for s, messages in codes.ALIYUN_MESSAGES.items() for m in messages]
# "<status>-<index of the message in the seed's list>": the messages are too long for ids.
ALIYUN_IDS = [f"{s}-{i}" for s, messages in codes.ALIYUN_MESSAGES.items() for i in range(len(messages))]


@pytest.fixture
def sim(shared_sim: Sim) -> Sim:
    return shared_sim


@functools.cache
def _card() -> bytes:
    return card()


def _request(sim: Sim) -> VerifyRequest:
    return sim.request(_card(), config={})


def _check(call: functools.partial[ProviderAnswer], code: str, expected: Expected) -> ProviderAnswer | None:
    """Either a negative answer naming ``code`` or the expected error class naming it."""
    if isinstance(expected, type):
        with pytest.raises(errors.ProviderError) as info:
            call()
        assert type(info.value) is expected
        assert info.value.provider_code == code
        assert not info.value.billable
        return None
    answer = call()
    assert answer.result.verdict == Verdict.NEGATIVE
    assert answer.calls[0].provider_code == code
    if isinstance(expected, WarningCode):
        assert expected in {w.code for w in answer.result.warnings}
    return answer


def test_every_catalogued_code_has_an_expectation() -> None:
    assert {c.code for c in codes.FACEID_CODES + codes.COMMON_CODES} == set(FACEID)
    assert {c.code for c in codes.OCR_CODES + codes.COMMON_CODES} == set(OCR)
    assert {c.code for c in codes.ACEDATA_CODES} == set(ACEDATA)
    assert {c.code for c in codes.GATEWAY_CODES} == set(GATEWAY)


@pytest.mark.parametrize("code", sorted(FACEID))
def test_faceid_adapter_reads_each_code_in_error(sim: Sim, code: str) -> None:
    sim.state.faults.update({"next": {f"faceid:{code}": 1}})
    answer = _check(functools.partial(sim.faceid().verify, _request(sim)), code, FACEID[code])
    assert sim.stats(f"faceid:{SECRET_ID}").get("billable", 0) == 0  # errors are not billed
    assert answer is None or not answer.calls[0].billable  # and idbatch agrees


@pytest.mark.parametrize("code", sorted(c.code for c in codes.FACEID_CODES))
def test_faceid_adapter_reads_each_code_in_result(sim: Sim, code: str) -> None:
    sim.state.faults.update({"next": {f"faceid:{code}": {"count": 1, "in": "result"}}})
    answer = _check(functools.partial(sim.faceid().verify, _request(sim)), code, FACEID[code])
    if answer is not None:  # an answer in Result is billed on both sides
        assert answer.calls[0].billable
        assert sim.stats(f"faceid:{SECRET_ID}")["billable"] == 1


@pytest.mark.parametrize("code", sorted(OCR))
def test_ocr_adapter_reads_each_code(sim: Sim, code: str) -> None:
    sim.state.faults.update({"next": {f"ocr:{code}": 1}})
    _check(functools.partial(sim.ocr().verify, _request(sim)), code, OCR[code])
    assert sim.stats(f"ocr:{SECRET_ID}").get("billable", 0) == 0


@pytest.mark.parametrize(("status", "message"), ALIYUN_CASES, ids=ALIYUN_IDS)
def test_aliyun_adapter_reads_each_vendor_status(sim: Sim, status: int, message: str) -> None:
    spec = {"count": 1, "message": message} if message else 1
    sim.state.faults.update({"next": {f"aliyun:{status}": spec}})
    _check(
        functools.partial(sim.aliyun().verify, _request(sim)), str(status), aliyun_expected(status, message)
    )
    assert sim.stats(f"aliyun:{APPCODE}").get("billable", 0) == 0


@pytest.mark.parametrize("message", sorted(GATEWAY))
def test_aliyun_adapter_reads_each_gateway_answer(sim: Sim, message: str) -> None:
    sim.state.faults.update({"next": {f"aliyun-gateway:{message}": 1}})
    status, gateway_code = codes.GATEWAY_ANSWERS[message]
    _check(functools.partial(sim.aliyun().verify, _request(sim)), gateway_code, GATEWAY[message])
    assert sim.stats(f"aliyun:{APPCODE}")["by_code"] == {message: 1}
    assert status in (403, 500, 503, 504)


@pytest.mark.parametrize("code", sorted(ACEDATA))
def test_acedata_adapter_reads_each_error(sim: Sim, code: str) -> None:
    sim.state.faults.update({"next": {f"acedata:{code}": 1}})
    _check(
        functools.partial(sim.acedata().verify, sim.request(_card(), config={}, as_url=True)),
        code,
        ACEDATA[code],
    )


@pytest.mark.parametrize("code", sorted(c.code for c in codes.FACEID_CODES))
def test_acedata_adapter_reads_each_relayed_faceid_code(sim: Sim, code: str) -> None:
    sim.state.faults.update({"next": {f"acedata:{code}": 1}})
    call = functools.partial(sim.acedata().verify, sim.request(_card(), config={}, as_url=True))
    _check(call, code, FACEID[code])


# --- natural triggers the knobs do not replace ------------------------------------------


def test_acedata_other_api_path_is_api_not_implemented(sim: Sim) -> None:
    auth = {"authorization": f"Bearer {ACEDATA_TOKEN}"}
    response = sim.client.post(sim.url + "/identity/idcard/check-9z", json={}, headers=auth)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "api_not_implemented"
    assert response.json()["success"] is False and response.json()["trace_id"]


def test_acedata_body_without_image_url_is_token_mismatched(sim: Sim) -> None:
    auth = {"authorization": f"Bearer {ACEDATA_TOKEN}"}
    response = sim.client.post(sim.url + "/identity/idcard/check-1e", json={"x": 1}, headers=auth)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "token_mismatched")


def test_aliyun_form_body_is_not_json(sim: Sim) -> None:
    headers = {"Authorization": f"APPCODE {APPCODE}"}
    response = sim.client.post(
        sim.url + "/ocr/idcard", data={"image": "x", "id_card_side": "front"}, headers=headers
    )
    assert response.status_code == 460
    assert response.text == "Invalid Input - failed to parse json"
    assert "x-ca-error-code" not in response.headers  # the vendor's answer, not the gateway's


# --- classification never needs an undocumented body ------------------------------------


@pytest.mark.parametrize("status", sorted(codes.ALIYUN_MESSAGES))
def test_aliyun_vendor_status_without_any_body_is_classified_by_status(status: int) -> None:
    """The seed documents a status and a message, no body: a bare status must do."""
    provider = AliyunMarketProvider(
        httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(status))),
        base_url="https://vendor",
        appcode="x",
    )
    request = VerifyRequest(1, ImageSource("f", None, _card), None, {})
    _check(functools.partial(provider.verify, request), str(status), aliyun_expected(status, ""))
