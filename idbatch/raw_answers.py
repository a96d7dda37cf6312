"""What of a provider's raw answer is stored: its documented fields, images as digests."""

from __future__ import annotations

from typing import Any

from idbatch.pii import strip_images

# Fields a stored raw answer may keep (all of it is encrypted, but what we do not keep
# cannot leak): the documented answer fields of the four providers (seeds 000-004) and our
# "front"/"back" envelope. Anything else is dropped and its key listed under "_dropped",
# so a provider's new field shows up in the record instead of being hoarded silently.
RAW_ALLOWED_KEYS = frozenset(
    {
        # our envelope
        "front",
        "back",
        "side",
        # Tencent Cloud API 3.0 (FaceID CheckIdCardInformation, OCR IDCardOCR)
        "Response",
        "RequestId",
        "Error",
        "Code",
        "Message",
        "Result",
        "Description",
        "Sim",
        "Name",
        "Sex",
        "Nation",
        "Birth",
        "Address",
        "IdNum",
        "Authority",
        "ValidDate",
        "AdvancedInfo",
        "WarnInfos",
        "Warnings",
        "Quality",
        "BorderCodeValue",
        "Encryption",
        "IdCard",
        "Portrait",
        "ReflectWarn",
        "BorderCheckWarn",
        "CopyWarn",
        "ReshootWarn",
        "PSWarn",
        "TempIdWarn",
        "InvalidDateWarn",
        "DetectPsWarn",
        "MultiCardDetect",
        "CardSide",
        # AceData check-1e
        "code",
        "message",
        "msg",
        "success",
        "trace_id",
        "error",
        "result",
        "sim",
        "warnings",
        "quality",
        "description",
        "name",
        "sex",
        "nation",
        "birth",
        "address",
        "id_num",
        "portrait",
        "encryption",
        "border_check_warn",
        "copy_warn",
        "detect_ps_warn",
        "reshoot_warn",
        "temp_id_warn",
        # Aliyun marketplace ID card OCR
        "error_code",
        "error_msg",
        "log_id",
        "words_result",
        "words_result_num",
        "words",
        "location",
        "left",
        "top",
        "width",
        "height",
        "idcardno",
        "birthday",
        "gov",
        "begindate",
        "enddate",
        "photocopy",
        "screen_reshoot",
        "bw_copy",
        "temporary_id",
        "image_status",
        "risk_type",
        "edit_tool",
        "direction",
        "photo",
        "photo_location",  # seed 004_: the portrait's box (coordinates only)
        "idcard_number_type",  # seed 004_: number vs sex/birth consistency (-1..4)
        "valid",  # seed 004_ (2020-05-18): the number passes the ID-number rules
        "住址",
        "公民身份号码",
        "出生",
        "姓名",
        "性别",
        "民族",
        "签发机关",
        "签发日期",
        "失效日期",
    }
)


def raw_for_storage(payload: dict[str, Any]) -> dict[str, Any]:
    """A provider's raw answer as stored: allowlisted fields only, images as digests."""
    kept = _allowlisted(strip_images(payload))
    return kept if isinstance(kept, dict) else {}


def _allowlisted(value: Any, depth: int = 0) -> Any:
    if depth > 32:
        return "<dropped: nested too deeply>"
    if isinstance(value, list):
        return [_allowlisted(v, depth + 1) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _allowlisted(v, depth + 1) for k, v in value.items() if k in RAW_ALLOWED_KEYS}
    dropped = sorted(str(k) for k in value if k not in RAW_ALLOWED_KEYS)
    if dropped:
        out["_dropped"] = dropped
    return out
