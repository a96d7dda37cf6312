"""Tencent OCR ``IDCardOCR`` (2018-11-19, seed 003_): recognition of both card sides.

``POST https://ocr.tencentcloudapi.com/`` signed with TC3-HMAC-SHA256; ``CardSide``
FRONT or BACK, so a job with a back image makes two calls and the fields are merged
(front: name ... ID number; back: authority and validity). ``AdvancedInfo`` is a JSON
*string* inside the JSON answer and is parsed a second time. ``WarnInfos`` may hold the
seed's codes (-9100..-9107) or the current ones (-9101..-9111); both are accepted.
``BorderCodeValue`` (asked with BorderCheckWarn) above the seed's threshold of 50 is an
incomplete border even when ``WarnInfos`` names none.
OCR only reads the card: it cannot check the identity against a registry.

Error mapping (``ERRORS``, ``OUTCOMES``)::

    Tencent common errors (see tencent_faceid)                see TENCENT_COMMON_ERRORS
    FailedOperation.DownLoadError      Unavailable     a fresh URL on retry may work
    FailedOperation.UnKnowError        Unavailable
    FailedOperation.EmptyImageError    ItemRejected
    FailedOperation.ImageDecodeFailed  ItemRejected
    FailedOperation.ImageSizeTooLarge  ItemRejected    (prevented: limits.TENCENT)
    FailedOperation.IdCardTooSmall     ItemRejected
    InvalidParameter.ConfigFormatError ItemRejected
    InvalidParameterValue.InvalidParameterValueLimit  ItemRejected
    LimitExceeded.TooLargeFileError    ItemRejected    (prevented: limits.TENCENT)
    FailedOperation.UnOpenError        AccountBlocked  service not activated
    ResourcesSoldOut.ChargeStatusException  AccountBlocked
    outcomes (negative verdict, not errors, not billed):
    FailedOperation.ImageNoIdCard      not_id_card
    FailedOperation.CardSideError      reversed_side
    FailedOperation.ImageBlur          low_quality
    FailedOperation.IdCardInfoIllegal  id_format_invalid
    FailedOperation.MultiCardError     multi_card
    FailedOperation.OcrFailed          ocr_failed

A successful recognition is billed; a call answered with an error code is not.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from idbatch.domain import NormalizedResult, Verdict, Warn, WarningCode, WarningSource
from idbatch.idnumber import normalize_sex
from idbatch.providers import errors, limits
from idbatch.providers.base import CallRecord, ProviderAnswer, VerifyRequest
from idbatch.providers.common import choose_handoff, handing_off, lookup
from idbatch.providers.parse import parse_date, parse_validity
from idbatch.providers.tencent_api import TencentProduct, TencentReply, raise_error
from idbatch.providers.tencent_codes import TENCENT_COMMON_ERRORS, card_warns, to_float

ERRORS: dict[str, type[errors.ProviderError]] = {
    **TENCENT_COMMON_ERRORS,
    "FailedOperation.DownLoadError": errors.Unavailable,
    "FailedOperation.UnKnowError": errors.Unavailable,
    "FailedOperation.EmptyImageError": errors.ItemRejected,
    "FailedOperation.ImageDecodeFailed": errors.ItemRejected,
    "FailedOperation.ImageSizeTooLarge": errors.ItemRejected,
    "FailedOperation.IdCardTooSmall": errors.ItemRejected,
    "InvalidParameter.ConfigFormatError": errors.ItemRejected,
    "InvalidParameterValue.InvalidParameterValueLimit": errors.ItemRejected,
    "LimitExceeded.TooLargeFileError": errors.ItemRejected,
    "FailedOperation.UnOpenError": errors.AccountBlocked,
    "ResourcesSoldOut.ChargeStatusException": errors.AccountBlocked,
}
OUTCOMES: dict[str, WarningCode] = {
    "FailedOperation.ImageNoIdCard": WarningCode.NOT_ID_CARD,
    "FailedOperation.CardSideError": WarningCode.REVERSED_SIDE,
    "FailedOperation.ImageBlur": WarningCode.LOW_QUALITY,
    "FailedOperation.IdCardInfoIllegal": WarningCode.ID_FORMAT_INVALID,
    "FailedOperation.MultiCardError": WarningCode.MULTI_CARD,
    "FailedOperation.OcrFailed": WarningCode.OCR_FAILED,
}

SERVICE = "ocr"
ACTION = "IDCardOCR"
VERSION = "2018-11-19"
QUALITY_THRESHOLD = 50.0  # the seed's recommended minimum
BORDER_THRESHOLD = 50.0  # the seed: BorderCodeValue above 50 means a border likely occluded

# Every Config flag of seed 003_, from our snake_case batch config or given verbatim.
CONFIG_KEYS = {
    "crop_id_card": "CropIdCard",
    "crop_portrait": "CropPortrait",
    "copy_warn": "CopyWarn",
    "border_check_warn": "BorderCheckWarn",
    "reshoot_warn": "ReshootWarn",
    "detect_ps_warn": "DetectPsWarn",
    "temp_id_warn": "TempIdWarn",
    "invalid_date_warn": "InvalidDateWarn",
    "quality": "Quality",
    "multi_card_detect": "MultiCardDetect",
    "reflect_warn": "ReflectWarn",
}


def ocr_config(config: dict[str, Any]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for key, value in config.items():
        flag = CONFIG_KEYS.get(key, key if key in CONFIG_KEYS.values() else None)
        if flag is not None and value not in (None, False, 0):
            out[flag] = True
    return out


def parse_advanced_info(value: Any) -> dict[str, Any]:
    """``AdvancedInfo`` is a JSON document serialized into a string; ``{}`` if absent/bad."""
    if isinstance(value, dict):
        return value
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


class TencentOcrProvider(TencentProduct):
    name = "tencent_ocr"
    two_sided = True  # FRONT and BACK are separate, separately billed calls
    SERVICE, ACTION, VERSION = SERVICE, ACTION, VERSION

    def verify(self, request: VerifyRequest) -> ProviderAnswer:
        config = ocr_config(request.config)
        quality_value = request.config.get("quality")
        threshold = (
            float(quality_value)
            if isinstance(quality_value, int | float) and not isinstance(quality_value, bool)
            else QUALITY_THRESHOLD
        )
        calls: list[CallRecord] = []
        answered: dict[str, dict[str, Any]] = {}
        front_reply = self._side(request, "front", config, calls, answered)
        back_reply: TencentReply | None = None
        if request.back is not None and front_reply.error_code is None:
            back_reply = self._side(request, "back", config, calls, answered)
        return ProviderAnswer(result=self._merge(front_reply, back_reply, threshold), calls=calls)

    def _side(
        self,
        request: VerifyRequest,
        side: str,
        config: dict[str, bool],
        calls: list[CallRecord],
        answered: dict[str, dict[str, Any]],
    ) -> TencentReply:
        """One side's reply: stored by an earlier attempt (paid already), or called now."""
        stored = request.answered.get(side)
        if stored is not None:
            return TencentReply(**stored)
        try:
            reply, record = self._call(request, side, config, done=calls)
        except errors.ProviderError as exc:
            exc.answered = dict(answered)  # the worker keeps them: the retry will not pay again
            raise
        calls.append(record)
        if record.billable:
            answered[side] = asdict(reply)
        return reply

    def _call(
        self, request: VerifyRequest, side: str, config: dict[str, bool], *, done: list[CallRecord]
    ) -> tuple[TencentReply, CallRecord]:
        source = request.front if side == "front" else request.back
        assert source is not None
        try:
            handoff, image = choose_handoff(source, self._handoff, limits.TENCENT, side=side)
            params: dict[str, Any] = (
                {"ImageBase64": limits.b64(image)} if isinstance(image, bytes) else {"ImageUrl": image}
            )
            params["CardSide"] = side.upper()
            if config:
                params["Config"] = json.dumps(config, separators=(",", ":"))
            request.paced(done)  # BACK after FRONT: its own rate slot, just before the send
            with handing_off(handoff):
                reply = self._caller.call(params, side=side)
                code = reply.error_code
                if code is not None and code not in OUTCOMES:
                    raise_error(reply, lookup(ERRORS, code), code, side=side)
        except errors.ProviderError as exc:
            exc.calls = list(done)  # a billed FRONT before a failed BACK still reconciles
            raise
        record = CallRecord(
            side=side,
            http_status=reply.http_status,
            provider_code=code or "Success",
            request_id=reply.request_id,
            latency_ms=reply.latency_ms,
            billable=code is None,
            handoff=handoff,
        )
        return reply, record

    def _merge(self, front: TencentReply, back: TencentReply | None, threshold: float) -> NormalizedResult:
        warns: list[Warn] = []
        quality: float | None = None
        for reply in (front, back):
            if reply is None:
                continue
            if reply.error_code is not None:
                outcome = OUTCOMES[reply.error_code]
                warns.append(Warn(outcome, WarningSource.PROVIDER, provider_code=reply.error_code))
                continue
            info = parse_advanced_info(reply.response.get("AdvancedInfo"))
            warns += card_warns([str(code) for code in info.get("WarnInfos") or []])
            border = to_float(info.get("BorderCodeValue"))
            bordered = {WarningCode.BORDER_INCOMPLETE, WarningCode.BORDER_OCCLUDED}
            if border is not None and border > BORDER_THRESHOLD and not bordered & {w.code for w in warns}:
                warns.append(
                    Warn(
                        WarningCode.BORDER_INCOMPLETE,
                        WarningSource.PROVIDER,
                        provider_code="BorderCodeValue",
                        detail=f"border score {border:.0f} > {BORDER_THRESHOLD:.0f}",
                    )
                )
            score = to_float(info.get("Quality"))
            if score is not None:
                quality = score if quality is None else min(quality, score)
                if score < threshold and not any(w.code == WarningCode.LOW_QUALITY for w in warns):
                    warns.append(
                        Warn(
                            WarningCode.LOW_QUALITY,
                            WarningSource.PROVIDER,
                            provider_code="Quality",
                            detail=f"quality {score:.0f} < {threshold:.0f}",
                        )
                    )
        f = front.response
        b = back.response if back is not None and back.error_code is None else {}
        valid_from, valid_to, long_term = parse_validity(b.get("ValidDate") or None)
        raw = {"front": f} if back is None else {"front": f, "back": back.response}
        return NormalizedResult(
            verdict=Verdict.NEGATIVE if warns else Verdict.PASSED,
            name=f.get("Name") or None,
            sex=normalize_sex(f.get("Sex")),
            nation=f.get("Nation") or None,
            birth=parse_date(f.get("Birth")),
            address=f.get("Address") or None,
            id_number=f.get("IdNum") or None,
            authority=b.get("Authority") or None,
            valid_from=valid_from,
            valid_to=valid_to,
            valid_long_term=long_term,
            quality=quality,
            description=front.error_message or None,
            warnings=warns,
            raw=raw,
        )
