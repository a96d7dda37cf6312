"""Reading the Aliyun vendor's answers (Baidu-style): fields and warnings of one side."""

from __future__ import annotations

from typing import Any

from idbatch.domain import Warn, WarningCode, WarningSource

IMAGE_STATUS: dict[str, WarningCode | None] = {
    "normal": None,
    "reversed_side": WarningCode.REVERSED_SIDE,
    "non_idcard": WarningCode.NOT_ID_CARD,
    "blurred": WarningCode.LOW_QUALITY,
    "other_type_card": WarningCode.OTHER_CARD_TYPE,
    "over_exposure": WarningCode.OVER_EXPOSURE,
    "over_dark": WarningCode.OVER_DARK,
    "unknown": None,
}
RISK_TYPE: dict[str, WarningCode | None] = {
    "normal": None,
    "copy": WarningCode.PHOTOCOPY,
    "temporary": WarningCode.TEMPORARY_ID,
    "screen": WarningCode.SCREEN_RESHOOT,
    "unknown": None,
}
NUMBER_TYPE: dict[str, list[WarningCode]] = {
    "-1": [WarningCode.OCR_FAILED],
    "0": [WarningCode.ID_FORMAT_INVALID],
    "1": [],
    "2": [WarningCode.SEX_MISMATCH_ID, WarningCode.BIRTH_MISMATCH_ID],
    "3": [WarningCode.BIRTH_MISMATCH_ID],
    "4": [WarningCode.SEX_MISMATCH_ID],
}


def answer_warns(answer: dict[str, Any]) -> list[Warn]:
    warns: list[Warn] = []
    status = str(answer.get("image_status") or "normal")
    code = IMAGE_STATUS.get(status)
    if code is not None:
        warns.append(Warn(code, WarningSource.PROVIDER, provider_code=f"image_status:{status}"))
    risk = str(answer.get("risk_type") or "normal")
    risk_code = RISK_TYPE.get(risk)
    if risk_code is not None:
        warns.append(Warn(risk_code, WarningSource.PROVIDER, provider_code=f"risk_type:{risk}"))
    if answer.get("edit_tool"):
        warns.append(
            Warn(
                WarningCode.PHOTOSHOPPED,
                WarningSource.PROVIDER,
                provider_code="edit_tool",
                detail=str(answer["edit_tool"])[:120],
            )
        )
    number_type = answer.get("idcard_number_type")
    if number_type is not None and status == "normal":
        for warning in NUMBER_TYPE.get(str(number_type), []):
            warns.append(
                Warn(warning, WarningSource.PROVIDER, provider_code=f"idcard_number_type:{number_type}")
            )
    msg = message(answer)
    if msg.get("valid") in (False, "false"):
        warns.append(Warn(WarningCode.ID_CHECKSUM_INVALID, WarningSource.PROVIDER, provider_code="valid"))
    return warns


# Baidu-style ``words_result`` keys, used when ``msg`` lacks a field.
WORDS_KEYS = {
    "name": "姓名",
    "sex": "性别",
    "nation": "民族",
    "birthday": "出生",
    "address": "住址",
    "idcardno": "公民身份号码",
    "gov": "签发机关",
    "begindate": "签发日期",
    "enddate": "失效日期",
}


def message(answer: dict[str, Any]) -> dict[str, Any]:
    """``msg`` as one object: the seed types it "array", so a list of objects is merged."""
    msg = answer.get("msg")
    if isinstance(msg, dict):
        return msg
    out: dict[str, Any] = {}
    if isinstance(msg, list):
        for item in msg:
            if isinstance(item, dict):
                out.update(item)
    return out


def fields(answer: dict[str, Any]) -> dict[str, Any]:
    msg = message(answer)
    raw_words = answer.get("words_result")
    words: dict[str, Any] = raw_words if isinstance(raw_words, dict) else {}
    out: dict[str, Any] = {}
    for key, word_key in WORDS_KEYS.items():
        value = msg.get(key)
        if not value and isinstance(words.get(word_key), dict):
            value = words[word_key].get("words")
        if value:
            out[key] = value
    return out
