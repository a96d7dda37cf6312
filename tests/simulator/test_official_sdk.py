"""The official tencentcloud-sdk-python as a second client of the simulator.

A client nobody here wrote, pointed at the simulator by endpoint alone
(``HttpProfile(endpoint="127.0.0.1:PORT")``, scheme http): it signs with its own TC3 code,
sends to ``/`` with ``Host: 127.0.0.1:PORT`` and names the product only in ``X-TC-Action``
and the credential scope, and parses answers into its own models. If the simulator
passes with it, it is not merely agreeing with idbatch's own client.
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.faceid.v20180301 import faceid_client
from tencentcloud.faceid.v20180301 import models as faceid_models
from tencentcloud.ocr.v20181119 import models as ocr_models
from tencentcloud.ocr.v20181119 import ocr_client

from simulator import codes
from tests.providers.conftest import SECRET_ID, SECRET_KEY, Sim, card, identity


def _profile(sim: Sim) -> ClientProfile:
    # Endpoint override only: no path, the SDK's own Host header and canonical URI "/".
    http = HttpProfile(endpoint=urlsplit(sim.url).netloc, reqTimeout=10)
    http.scheme = "http"
    return ClientProfile(httpProfile=http)


def faceid(sim: Sim, secret_id: str = SECRET_ID, secret_key: str = SECRET_KEY) -> Any:
    return faceid_client.FaceidClient(credential.Credential(secret_id, secret_key), "", _profile(sim))


def ocr(sim: Sim, secret_id: str = SECRET_ID, secret_key: str = SECRET_KEY) -> Any:
    return ocr_client.OcrClient(credential.Credential(secret_id, secret_key), "", _profile(sim))


def check_id_card(client: Any, image: bytes, config: dict[str, Any] | None = None, **extra: Any) -> Any:
    request = faceid_models.CheckIdCardInformationRequest()
    params: dict[str, Any] = {"ImageBase64": base64.b64encode(image).decode(), **extra}
    if config is not None:
        params["Config"] = json.dumps(config)
    request.from_json_string(json.dumps(params))
    return client.CheckIdCardInformation(request)


def id_card_ocr(client: Any, image: bytes, side: str = "FRONT", config: dict[str, Any] | None = None) -> Any:
    request = ocr_models.IDCardOCRRequest()
    request.ImageBase64 = base64.b64encode(image).decode()
    request.CardSide = side
    if config is not None:
        request.Config = json.dumps(config)
    return client.IDCardOCR(request)


def sdk_error(call: Callable[[], Any]) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as info:
        call()
    return info.value


# --- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("product", [faceid, ocr], ids=["faceid", "ocr"])
def test_a_wrong_secret_key_is_an_auth_failure(sim: Sim, product: Callable[..., Any]) -> None:
    client = product(sim, secret_key="not-the-key")
    call = check_id_card if product is faceid else id_card_ocr
    error = sdk_error(lambda: call(client, card()))
    assert error.code == "AuthFailure.SignatureFailure"
    assert error.requestId


@pytest.mark.parametrize("product", [faceid, ocr], ids=["faceid", "ocr"])
def test_an_unknown_secret_id_is_an_auth_failure(sim: Sim, product: Callable[..., Any]) -> None:
    client = product(sim, secret_id="AKIDnobody")
    call = check_id_card if product is faceid else id_card_ocr
    assert sdk_error(lambda: call(client, card())).code == "AuthFailure.SecretIdNotFound"


def test_a_stale_sdk_clock_is_signature_expire(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK signs with ``time.time()``: ten minutes slow is past the 5-minute window."""
    import time as real_time

    from tencentcloud.common import abstract_client

    class SlowTime:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_time, name)

        @staticmethod
        def time() -> float:
            return real_time.time() - 600

    monkeypatch.setattr(abstract_client, "time", SlowTime())
    assert sdk_error(lambda: id_card_ocr(ocr(sim), card())).code == "AuthFailure.SignatureExpire"


# --- success parsed into the SDK's models ------------------------------------------------


def test_faceid_success_is_parsed_into_the_sdk_model(sim: Sim) -> None:
    ident = identity()
    sim.enrol(ident)
    response = check_id_card(faceid(sim), card(ident=ident), {"CopyWarn": True})
    assert isinstance(response, faceid_models.CheckIdCardInformationResponse)
    assert response.Result == "Success"
    assert (response.Name, response.IdNum, response.Sex) == (ident.name, ident.id_number, ident.sex)
    assert response.Sim >= 70
    assert response.Quality > 50  # scored though Quality was not asked (seed 002_'s example)
    assert response.RequestId
    assert sim.stats(f"faceid:{SECRET_ID}")["billable"] == 1


def test_ocr_front_and_back_are_parsed_into_the_sdk_model(sim: Sim) -> None:
    ident = identity()
    client = ocr(sim)
    front = id_card_ocr(client, card(ident=ident), "FRONT", {"Quality": True, "CopyWarn": True})
    assert isinstance(front, ocr_models.IDCardOCRResponse)
    assert (front.Name, front.IdNum, front.Nation) == (ident.name, ident.id_number, ident.nation)
    info = json.loads(front.AdvancedInfo)  # a JSON document inside a string
    assert info["Quality"] > 50
    assert info["WarnInfos"] == []
    back = id_card_ocr(client, card("back", ident=ident), "BACK")
    assert back.Authority == ident.authority
    assert back.ValidDate == ident.validity_text()
    assert back.IdNum == ""


def test_ocr_warnings_reach_the_sdk_in_advanced_info(sim: Sim) -> None:
    response = id_card_ocr(ocr(sim), card(variants=["temporary_id"]), "FRONT", {"TempIdWarn": True})
    assert json.loads(response.AdvancedInfo)["WarnInfos"] == [-9104]  # seed 003_'s example 4


def test_undocumented_fields_do_not_break_the_sdk(sim: Sim) -> None:
    ident = identity()
    sim.enrol(ident)
    sim.state.faults.update({"extra_fields": True})
    with warnings.catch_warnings(record=True):  # the SDK warns "fileds are useless", no more
        warnings.simplefilter("always")
        response = check_id_card(faceid(sim), card(ident=ident))
    assert (response.Result, response.IdNum) == ("Success", ident.id_number)


def test_natural_ocr_errors_reach_the_sdk(sim: Sim) -> None:
    client = ocr(sim)
    assert sdk_error(lambda: id_card_ocr(client, card(), "SIDEWAYS")).code == (
        "InvalidParameterValue.InvalidParameterValueLimit"
    )
    assert (
        sdk_error(lambda: id_card_ocr(client, card("back"), "FRONT")).code == "FailedOperation.CardSideError"
    )
    request = ocr_models.IDCardOCRRequest()
    request.ImageBase64, request.Config = base64.b64encode(card()).decode(), "not json"
    assert sdk_error(lambda: client.IDCardOCR(request)).code == "InvalidParameter.ConfigFormatError"


def test_natural_faceid_answers_reach_the_sdk(sim: Sim) -> None:
    ident = identity()
    sim.enrol(ident, name="别的名字")
    client = faceid(sim)
    assert check_id_card(client, card(ident=ident)).Result == "FailedOperation.IdNameMisMatch"
    warned = check_id_card(client, card(ident=ident, variants=["photocopy"]), {"CopyWarn": True})
    assert (warned.Result, warned.Warnings) == ("FailedOperation.OcrWarningOccurred", "-9102")
    assert (
        sdk_error(lambda: check_id_card(client, b"not an image")).code == "FailedOperation.ImageDecodeFailed"
    )


# --- rate limit ---------------------------------------------------------------------------


class SteppingClock:
    """Arrival times 1/rate apart, whatever the machine's speed: a burst at exactly ``rate``."""

    def __init__(self, rate: float) -> None:
        self.now = 1000.0
        self.step = 1.0 / rate

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_burst_past_20_per_second_on_ocr_is_request_limit_exceeded(sim: Sim) -> None:
    sim.state.clock = SteppingClock(rate=40.0)  # 40 calls in one second of arrivals
    client = ocr(sim)
    not_a_card = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # quick to refuse once admitted
    outcomes = [sdk_error(lambda: id_card_ocr(client, not_a_card)).code for _ in range(40)]
    limited = [code for code in outcomes if code == "RequestLimitExceeded"]
    assert len(limited) == 20  # the documented 20/s: 20 admitted in the second, 20 refused
    assert outcomes[:20] == ["FailedOperation.ImageDecodeFailed"] * 20
    assert sim.stats(f"ocr:{SECRET_ID}")["over_quota"] == 20


def test_faceid_takes_100_per_second(sim: Sim) -> None:
    sim.state.clock = SteppingClock(rate=100.0)
    client = faceid(sim)
    codes_seen = {sdk_error(lambda: check_id_card(client, b"")).code for _ in range(30)}
    assert codes_seen == {"InvalidParameter"}  # no image, but never over the limit


# --- every documented code ---------------------------------------------------------------

FACEID_KEYS = [c.code for c in codes.FACEID_CODES + codes.COMMON_CODES]
OCR_KEYS = [c.code for c in codes.OCR_CODES + codes.COMMON_CODES]


@pytest.mark.parametrize("code", sorted(set(FACEID_KEYS)))
def test_every_faceid_code_reaches_the_sdk(sim: Sim, code: str) -> None:
    sim.state.faults.update({"next": {f"faceid:{code}": 1}})
    error = sdk_error(lambda: check_id_card(faceid(sim), card()))
    assert (error.code, bool(error.requestId)) == (code, True)


@pytest.mark.parametrize("code", sorted(set(OCR_KEYS)))
def test_every_ocr_code_reaches_the_sdk(sim: Sim, code: str) -> None:
    sim.state.faults.update({"next": {f"ocr:{code}": 1}})
    error = sdk_error(lambda: id_card_ocr(ocr(sim), card()))
    assert (error.code, bool(error.requestId)) == (code, True)


def test_a_faceid_business_code_in_result_is_parsed_by_the_sdk(sim: Sim) -> None:
    sim.state.faults.update({"next": {"faceid:IdPhotoNoExist": {"count": 1, "in": "result"}}})
    response = check_id_card(faceid(sim), card())
    assert response.Result == "FailedOperation.IdPhotoNoExist"
    assert response.Sim == 0


def test_encrypted_modes_are_refused_clearly(sim: Sim) -> None:
    error = sdk_error(lambda: check_id_card(faceid(sim), card(), IsEncrypt=True))
    assert error.code == "UnsupportedOperation"
    assert "IsEncrypt" in error.message
