"""Request and answer shapes as the seeds document them, and adapters that read exactly those.

Each test names the seed line it holds the simulator or the adapter to: Aliyun's JSON
body, ``msg`` typed "array", ``log_id`` a uint64, ``idcard_number_type`` a string; the
AceData success example without ``trace_id``; FaceID's ``Quality`` scored without the
Quality flag; OCR's older (-9100..-9107) and newer (-9101..-9111) warning lists and
``BorderCodeValue``; undocumented fields ignored; encrypted answers refused clearly.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from idbatch.domain import Verdict, WarningCode
from idbatch.providers import errors, tc3
from idbatch.providers.acedata import AceDataProvider
from idbatch.providers.base import ImageSource, VerifyRequest
from idbatch.providers.tencent_api import TencentCaller
from idbatch.providers.tencent_faceid import TencentFaceIdProvider
from idbatch.providers.tencent_ocr import TencentOcrProvider
from tests.providers.conftest import ACEDATA_TOKEN, SECRET_ID, SECRET_KEY, Sim, card, identity

# Seed 000_'s success example, every key of it and no other.
ACEDATA_SUCCESS_KEYS = {
    "sim",
    "result",
    "description",
    "name",
    "sex",
    "nation",
    "birth",
    "address",
    "id_num",
    "portrait",
    "warnings",
    "quality",
    "encryption",
}


@pytest.fixture
def sim(shared_sim: Sim) -> Sim:
    return shared_sim


def _mock(cls: Any, answer: dict[str, Any]) -> Any:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={"Response": answer}))
    return cls(httpx.Client(transport=transport), base_url="https://x", secret_id="i", secret_key="k")


def _request(config: dict[str, Any] | None = None) -> VerifyRequest:
    data = card()
    return VerifyRequest(1, ImageSource("f", None, lambda: data), None, config or {})


# --- Aliyun (seed 004_) ---------------------------------------------------------------


def test_aliyun_msg_as_an_array_is_read_like_an_object(sim: Sim) -> None:
    ident = identity()
    sim.state.faults.update({"aliyun_msg": "list"})
    answer = sim.aliyun().verify(sim.request(card(ident=ident), card("back", ident=ident)))
    assert isinstance(answer.result.raw["front"]["msg"], list)
    assert answer.result.verdict == Verdict.PASSED
    assert (answer.result.name, answer.result.id_number) == (ident.name, ident.id_number)
    assert answer.result.authority == ident.authority


def test_aliyun_log_id_is_a_uint64_kept_exact_as_the_request_id(sim: Sim) -> None:
    answer = sim.aliyun().verify(sim.request(card()))
    log_id = answer.result.raw["front"]["log_id"]
    assert type(log_id) is int and 0 <= log_id < 2**64
    assert answer.calls[0].request_id == str(log_id)  # not the gateway's X-Ca-Request-Id


def test_aliyun_idcard_number_type_is_a_string(sim: Sim) -> None:
    answer = sim.aliyun().verify(sim.request(card()))
    assert answer.result.raw["front"]["idcard_number_type"] == "1"
    assert answer.result.verdict == Verdict.PASSED


def test_aliyun_urlencoded_base64_is_accepted_as_the_seed_describes(sim: Sim) -> None:
    image = quote(base64.b64encode(card()).decode(), safe="")
    headers = {"Authorization": "APPCODE sim-aliyun-appcode"}
    body = {"image": image, "id_card_side": "front"}
    response = sim.client.post(sim.url + "/ocr/idcard", json=body, headers=headers)
    assert (response.status_code, response.json()["image_status"]) == (200, "normal")


# --- AceData (seeds 000_, 001_) -------------------------------------------------------


def test_acedata_success_has_the_seed_example_keys_and_no_trace_id(sim: Sim) -> None:
    ident = identity()
    sim.enrol(ident)
    url = sim.images.put("c.jpg", card(ident=ident))
    headers = {"authorization": f"Bearer {ACEDATA_TOKEN}"}
    response = sim.client.post(
        sim.url + "/identity/idcard/check-1e", json={"image_url": url}, headers=headers
    )
    assert set(response.json()) == ACEDATA_SUCCESS_KEYS
    answer = sim.acedata().verify(sim.request(card(ident=ident), config={}, as_url=True))
    assert answer.result.verdict == Verdict.PASSED  # nothing of the adapter needs a trace_id


def test_acedata_error_has_the_seed_example_shape(sim: Sim) -> None:
    response = sim.client.post(sim.url + "/identity/idcard/check-1e", json={}, headers={"authorization": "x"})
    body = response.json()
    assert (response.status_code, set(body), set(body["error"])) == (
        401,
        {"success", "error", "trace_id"},
        {"code", "message"},
    )


def test_acedata_encrypted_answer_is_refused_clearly() -> None:
    answer = {"result": "Success", "sim": 99, "encryption": {"CiphertextBlob": "x"}}
    client = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, json=answer)))
    provider = AceDataProvider(client, base_url="https://x", token="t")
    request = VerifyRequest(1, ImageSource("f", "https://img/1.jpg", None), None, {})
    with pytest.raises(errors.AccountBlocked, match="encrypt"):
        provider.verify(request)


# --- Tencent FaceID (seed 002_) -------------------------------------------------------


def test_faceid_quality_is_scored_without_the_quality_flag(sim: Sim) -> None:
    sim.enrol(identity())
    answer = sim.faceid().verify(sim.request(card(), config={"copy_warn": True}))
    assert answer.result.quality is not None
    assert answer.result.quality > 50  # the seed's example: 99 with CopyWarn only


def test_faceid_encrypted_answer_is_refused_clearly() -> None:
    provider = _mock(TencentFaceIdProvider, {"Result": "Success", "EncryptedBody": "x", "RequestId": "r"})
    with pytest.raises(errors.AccountBlocked, match="encrypt"):
        provider.verify(_request())


def test_faceid_encrypted_request_modes_are_refused_by_the_simulator(sim: Sim) -> None:
    caller = TencentCaller(
        sim.client,
        base_url=sim.url,
        service="faceid",
        action="CheckIdCardInformation",
        version="2018-03-01",
        secret_id=SECRET_ID,
        secret_key=SECRET_KEY,
    )
    reply = caller.call(
        {"ImageUrl": "http://x/1.jpg", "Encryption": {"Algorithm": "AES-256-CBC"}}, side="front"
    )
    assert reply.error_code == "UnsupportedOperation"
    assert "Encryption" in reply.error_message


# --- Tencent OCR (seed 003_) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "side", "seed_code", "warning"),
    [
        ("invalid_validity", "back", -9100, WarningCode.INVALID_VALIDITY),
        ("bw_copy", "front", -9102, WarningCode.PHOTOCOPY),
        ("glare", "front", -9107, WarningCode.GLARE),
    ],
)
def test_ocr_seed_warning_list(
    sim: Sim, variant: str, side: str, seed_code: int, warning: WarningCode
) -> None:
    sim.state.faults.update({"ocr_warn_list": "seed"})
    front = card(variants=[variant] if side == "front" else [])
    back = card("back", variants=[variant] if side == "back" else [])
    answer = sim.ocr().verify(sim.request(front, back))
    info = json.loads(answer.result.raw[side]["AdvancedInfo"])
    assert info["WarnInfos"] == [seed_code]
    assert warning in {w.code for w in answer.result.warnings}


def test_ocr_seed_list_has_no_code_for_an_electronic_id(sim: Sim) -> None:
    sim.state.faults.update({"ocr_warn_list": "seed"})
    answer = sim.ocr().verify(sim.request(card(variants=["electronic_id"])))
    assert json.loads(answer.result.raw["front"]["AdvancedInfo"])["WarnInfos"] == []
    assert answer.result.verdict == Verdict.PASSED


def test_ocr_border_code_value_above_50_is_an_incomplete_border() -> None:
    answer = {
        "IdNum": "",
        "AdvancedInfo": json.dumps({"BorderCodeValue": 80, "WarnInfos": []}),
        "RequestId": "r",
    }
    result = _mock(TencentOcrProvider, answer).verify(_request({"border_check_warn": True})).result
    assert [(w.code, w.provider_code) for w in result.warnings] == [
        (WarningCode.BORDER_INCOMPLETE, "BorderCodeValue")
    ]


def test_ocr_border_code_value_from_the_simulator(sim: Sim) -> None:
    clean = sim.ocr().verify(sim.request(card(), config={"border_check_warn": True}))
    assert json.loads(clean.result.raw["front"]["AdvancedInfo"])["BorderCodeValue"] <= 50
    assert clean.result.verdict == Verdict.PASSED


# --- undocumented fields are ignored by every adapter ---------------------------------


@pytest.mark.parametrize("adapter", ["faceid", "ocr", "aliyun", "acedata"])
def test_undocumented_fields_are_ignored(sim: Sim, adapter: str) -> None:
    ident = identity()
    sim.enrol(ident)
    sim.state.faults.update({"extra_fields": True})
    provider = getattr(sim, adapter)()
    answer = provider.verify(sim.request(card(ident=ident), config={}, as_url=adapter == "acedata"))
    assert answer.result.verdict == Verdict.PASSED
    assert answer.result.id_number == ident.id_number
    assert "ndocumented" in json.dumps(answer.result.raw)  # it was there, and was ignored


# --- Tencent at "/" -------------------------------------------------------------------


@pytest.mark.parametrize("product", ["faceid", "ocr"])
def test_idbatch_adapters_work_at_the_root_routed_by_action(sim: Sim, product: str) -> None:
    ident = identity()
    sim.enrol(ident)
    cls = TencentFaceIdProvider if product == "faceid" else TencentOcrProvider
    provider = cls(sim.client, base_url=sim.url, secret_id=SECRET_ID, secret_key=SECRET_KEY)
    answer = provider.verify(sim.request(card(ident=ident), config={}))
    assert answer.result.id_number == ident.id_number
    assert sim.stats(f"{product}:{SECRET_ID}")["billable"] == 1


def test_an_unknown_action_at_the_root_is_invalid_action(sim: Sim) -> None:
    response = sim.client.post(sim.url + "/", json={}, headers={"X-TC-Action": "DescribeNothing"})
    assert response.status_code == 200
    error = response.json()["Response"]["Error"]
    assert error["Code"] == "InvalidAction"
    assert response.json()["Response"]["RequestId"]


@pytest.mark.parametrize(
    ("host", "action", "version", "service", "code"),
    [
        # The Host label names the product (a setup mapping the real names): it wins.
        ("faceid.tencentcloudapi.com", "CheckIdCardInformation", "2018-03-01", "faceid", "InvalidParameter"),
        ("ocr.tencentcloudapi.com", "CheckIdCardInformation", "2018-03-01", "faceid", "InvalidAction"),
        # A bare address: X-TC-Action decides, and the scope must then agree with it.
        ("127.0.0.1:9", "IDCardOCR", "2018-11-19", "ocr", "InvalidParameter"),
        ("127.0.0.1:9", "IDCardOCR", "2018-11-19", "faceid", "AuthFailure.SignatureFailure"),
        # No known action: the credential scope picks the product, which refuses the action.
        ("127.0.0.1:9", "DescribeNothing", "2018-11-19", "ocr", "InvalidAction"),
    ],
)
def test_root_routing(sim: Sim, host: str, action: str, version: str, service: str, code: str) -> None:
    body = b"{}"
    headers = tc3.signed_headers(
        secret_id=SECRET_ID,
        secret_key=SECRET_KEY,
        service=service,
        host=host,
        action=action,
        version=version,
        payload=body,
    )
    response = sim.client.post(sim.url + "/", content=body, headers={**headers, "Host": host})
    assert response.json()["Response"]["Error"]["Code"] == code
