"""Tencent FaceID ``CheckIdCardInformation`` (2018-03-01, seed 002_).

``POST https://faceid.tencentcloudapi.com/`` signed with TC3-HMAC-SHA256 (``tc3``),
``ImageBase64`` or ``ImageUrl`` of the portrait side, ``Config`` as a JSON *string*.
The answer's ``Result`` carries a business code; a business code may also come back as
``Response.Error.Code``. Both places are read through the same table.

Error mapping — ``ERRORS`` below, built from two documented lists::

    Tencent common errors (tencent_codes.TENCENT_COMMON_ERRORS)
        AuthFailure.*, UnauthorizedOperation.*, ResourceUnavailable.InArrears,
        ResourceUnavailable.ResourcePackageRunOut, LimitExceeded     AccountBlocked
        RequestLimitExceeded(.UinLimitExceeded, ...)                 RateLimited
        InternalError(.*)                                            Unavailable
        InvalidParameter(.*), InvalidParameterValue, MissingParameter ItemRejected
    FaceID business errors (tencent_codes.FACEID_ERRORS)
        CompareFail/CompareSystemError/DownLoadError/...             Unavailable
        FailedOperation.RequestLimitExceeded                         RateLimited
        EmptyImageError/ImageDecodeFailed/ImageSizeTooLarge/...      ItemRejected
        UnauthorizedOperation.Arrears/Nonactivated/...               AccountBlocked
    FaceID outcomes (tencent_codes.FACEID_OUTCOMES): not errors but answers
        Success, OcrWarningOccurred, IdNameMisMatch, CompareLowSimilarity,
        IdNoExistSystem, IdPhotoNoExist, ImageNoIdCard, ImageBlur, ...  verdict
    transport error / timeout                                        Unavailable

Outcomes are billable answers when they come in ``Result``; an answer in
``Response.Error`` is not billed, whatever its code (Cloud API 3.0 charges no call that
ends in an error, as the OCR adapter and the simulator's counts also assume).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from idbatch.providers import errors, limits
from idbatch.providers.base import CallRecord, ProviderAnswer, VerifyRequest
from idbatch.providers.common import choose_handoff, handing_off, lookup
from idbatch.providers.tencent_api import TencentProduct, raise_error, refuse_encrypted
from idbatch.providers.tencent_codes import (
    FACEID_ERRORS,
    FACEID_OUTCOMES,
    TENCENT_COMMON_ERRORS,
    faceid_result,
)

ERRORS: dict[str, type[errors.ProviderError]] = {**TENCENT_COMMON_ERRORS, **FACEID_ERRORS}
OUTCOMES = FACEID_OUTCOMES

SERVICE = "faceid"
ACTION = "CheckIdCardInformation"
VERSION = "2018-03-01"

# Our batch config (AceData-style snake_case) -> FaceID Config keys.
CONFIG_KEYS = {
    "copy_warn": "CopyWarn",
    "border_check_warn": "BorderCheckWarn",
    "reshoot_warn": "ReshootWarn",
    "detect_ps_warn": "DetectPsWarn",
    "temp_id_warn": "TempIdWarn",
    "quality": "Quality",
}


def faceid_config(config: dict[str, Any]) -> dict[str, bool]:
    """FaceID's Config flags (all booleans) from a batch config in either spelling."""
    out: dict[str, bool] = {}
    for key, value in config.items():
        flag = CONFIG_KEYS.get(key, key if key in CONFIG_KEYS.values() else None)
        if flag is not None and value not in (None, False, 0):
            out[flag] = True
    return out


class TencentFaceIdProvider(TencentProduct):
    name = "tencent_faceid"
    two_sided = False
    SERVICE, ACTION, VERSION = SERVICE, ACTION, VERSION

    def __init__(self, client: httpx.Client, *, similarity_threshold: float = 70.0, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._threshold = similarity_threshold

    def verify(self, request: VerifyRequest) -> ProviderAnswer:
        handoff, image = choose_handoff(request.front, self._handoff, limits.TENCENT, side="front")
        params: dict[str, Any] = (
            {"ImageBase64": limits.b64(image)} if isinstance(image, bytes) else {"ImageUrl": image}
        )
        config = faceid_config(request.config)
        if config:
            params["Config"] = json.dumps(config, separators=(",", ":"))
        with handing_off(handoff):
            reply = self._caller.call(params, side="front")
            refuse_encrypted(reply, side="front")
            payload = reply.response
            code = reply.error_code or str(payload.get("Result") or "")
            if code not in OUTCOMES:
                cls = lookup(ERRORS, code) if code else errors.Unavailable
                raise_error(reply, cls, code or "no Result", side="front")
        record = CallRecord(
            side="front",
            http_status=reply.http_status,
            provider_code=code,
            request_id=reply.request_id,
            latency_ms=reply.latency_ms,
            billable=reply.error_code is None,
            handoff=handoff,
        )
        result = faceid_result(
            code,
            fields=payload,
            sim=payload.get("Sim"),
            warnings=payload.get("Warnings"),
            quality=payload.get("Quality"),
            description=payload.get("Description") or reply.error_message,
            threshold=self._threshold,
            raw=payload,
        )
        return ProviderAnswer(result=result, calls=[record])
