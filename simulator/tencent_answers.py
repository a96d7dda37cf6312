"""The bodies of Tencent's two answers: FaceID's output fields and OCR's ``AdvancedInfo``.

Apart from ``simulator.tencent`` (routing, signatures, errors) so each stays small; every
documented output field is present, and ``EXTRA_FIELD`` is what ``Faults.extra_fields``
adds to test that clients ignore what they do not know.
"""

from __future__ import annotations

from typing import Any

from simulator.cards import Truth
from simulator.identity import FAKE_PORTRAIT, card_fields, quality_of

EXTRA_FIELD = "SimUndocumentedField"

# Drawn-in variant -> (IDCardOCR Config flag or None = always reported, current warn code).
OCR_WARN_FLAGS: dict[str, tuple[str | None, int]] = {
    "border_incomplete": ("BorderCheckWarn", -9101),
    "photocopy": ("CopyWarn", -9102),
    "screen_reshoot": ("ReshootWarn", -9103),
    "temporary_id": ("TempIdWarn", -9104),
    "border_occluded": ("BorderCheckWarn", -9105),
    "photoshopped": ("DetectPsWarn", -9106),
    "glare": ("ReflectWarn", -9107),
    "bw_copy": ("CopyWarn", -9108),
    "invalid_validity": ("InvalidDateWarn", -9109),
    "electronic_id": (None, -9110),
    "watermark": (None, -9111),
}
# Seed 003_'s older list (-9100..-9107), for Faults.ocr_warn_list = "seed": -9100 is the
# invalid validity period, a black-and-white copy is a photocopy, and the seed has no
# codes for electronic IDs or watermarks (not reported).
OCR_SEED_CODES = {-9108: -9102, -9109: -9100, -9110: None, -9111: None}


def faceid_fields(
    result: str,
    description: str,
    fields: dict[str, str],
    sim: float,
    warnings: str,
    quality: float,
    *,
    extra: bool,
) -> dict[str, Any]:
    """A CheckIdCardInformation answer, every documented output field present."""
    out: dict[str, Any] = {
        "Sim": sim,
        "Result": result,
        "Description": description,
        "Name": fields.get("Name", ""),
        "Sex": fields.get("Sex", ""),
        "Nation": fields.get("Nation", ""),
        "Birth": fields.get("Birth", ""),
        "Address": fields.get("Address", ""),
        "IdNum": fields.get("IdNum", ""),
        "Portrait": FAKE_PORTRAIT if fields else "",
        "Warnings": warnings,
        "Quality": quality,
        "Encryption": None,
    }
    if extra:
        out[EXTRA_FIELD] = {"nested": [1, "two"]}
    return out


def ocr_fields(truth: Truth) -> dict[str, str]:
    out = dict.fromkeys(("Name", "Sex", "Nation", "Birth", "Address", "IdNum", "Authority", "ValidDate"), "")
    if truth.side == "front":
        out.update(card_fields(truth))
    else:
        out["Authority"] = truth.identity.authority
        out["ValidDate"] = truth.identity.validity_text()
    return out


def advanced_info(truth: Truth, config: dict[str, Any], *, seed_list: bool = False) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if config.get("CropIdCard"):
        info["IdCard"] = FAKE_PORTRAIT
    if config.get("CropPortrait") and truth.side == "front":
        info["Portrait"] = FAKE_PORTRAIT
    if config.get("Quality"):
        info["Quality"] = int(quality_of(truth))
    if config.get("BorderCheckWarn"):
        bordered = {"border_incomplete", "border_occluded"} & set(truth.variants)
        info["BorderCodeValue"] = 85 if bordered else 8
    warn_flags = {flag for flag, _ in OCR_WARN_FLAGS.values() if flag}
    codes = [
        code
        for variant, (flag, code) in OCR_WARN_FLAGS.items()
        if variant in truth.variants and (flag is None or config.get(flag))
    ]
    if seed_list:
        mapped = (OCR_SEED_CODES.get(code, code) for code in codes)
        codes = sorted({code for code in mapped if code is not None})
    if codes or any(config.get(flag) for flag in warn_flags):
        info["WarnInfos"] = sorted(codes, reverse=True)
    return info
