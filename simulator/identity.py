"""What a verification or recognition backend "sees" in an image, and what FaceID answers.

``faceid_answer`` is shared by the AceData and Tencent FaceID protocols (AceData relays
FaceID's codes). ``look_at`` and ``card_fields`` serve the recognition-only protocols
(Tencent OCR, Aliyun marketplace) too, so every protocol reads the same ground truth and
the same drawn-in variants: a card answers alike whichever protocol is asked.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

from simulator.cards import Truth, read_truth
from simulator.state import SimState

# Which drawn-in variant each FaceID Config flag reports, and with which code.
FACEID_WARN_FLAGS: dict[str, tuple[str, str]] = {
    "border_incomplete": ("BorderCheckWarn", "-9101"),
    "photocopy": ("CopyWarn", "-9102"),
    "bw_copy": ("CopyWarn", "-9102"),
    "screen_reshoot": ("ReshootWarn", "-9103"),
    "temporary_id": ("TempIdWarn", "-9104"),
    "border_occluded": ("BorderCheckWarn", "-9105"),
    "photoshopped": ("DetectPsWarn", "-9106"),
}
BLUR_QUALITY = 30.0
SHARP_QUALITY = 92.0
FAKE_PORTRAIT = "/9j/4AAQSkZJRgABAQAAAQABAAD" + "A" * 120  # a stand-in, never a real face


@dataclass
class Look:
    """What a backend can tell about an image before answering in its own protocol."""

    kind: str  # empty / undecodable / not_card / card
    truth: Truth | None = None
    format: str | None = None
    size: tuple[int, int] = (0, 0)


def look_at(image: bytes) -> Look:
    if not image:
        return Look("empty")
    try:
        with Image.open(io.BytesIO(image)) as im:
            fmt, size = str(im.format), im.size
            im.verify()
    except (UnidentifiedImageError, OSError, ValueError):
        return Look("undecodable")
    truth = read_truth(image)
    return Look("card" if truth is not None else "not_card", truth, fmt, size)


def quality_of(truth: Truth) -> float:
    return BLUR_QUALITY if "blur" in truth.variants else SHARP_QUALITY


def item_key(truth: Truth | None, side: str = "front") -> str | None:
    """What identifies one billed item, to spot the same card billed twice."""
    if truth is None:
        return None
    suffix = "" if side == "front" else f":{side}"
    return f"{truth.identity.id_number}:{truth.identity.portrait_seed}{suffix}"


@dataclass
class FaceIdAnswer:
    result: str
    description: str
    sim: float = 0.0
    fields: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    quality: float = 0.0
    billable: bool = True
    truth: Truth | None = None


def _stable_fraction(*parts: Any) -> float:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def card_fields(truth: Truth) -> dict[str, str]:
    ident = truth.identity
    return {
        "Name": ident.name,
        "Sex": ident.sex,
        "Nation": ident.nation,
        "Birth": f"{ident.birth.year}/{ident.birth.month}/{ident.birth.day}",
        "Address": ident.address,
        "IdNum": ident.id_number,
    }


def faceid_answer(state: SimState, image: bytes, config: dict[str, Any]) -> FaceIdAnswer:
    """The FaceID ``CheckIdCardInformation`` decision for one image and Config."""
    if not image:
        return FaceIdAnswer("FailedOperation.EmptyImageError", "Image content is empty.", billable=False)
    truth = read_truth(image)
    if truth is None:
        try:
            with Image.open(io.BytesIO(image)) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, ValueError):
            return FaceIdAnswer("FailedOperation.ImageDecodeFailed", "Image decoding failed.", billable=False)
        return FaceIdAnswer("FailedOperation.ImageNoIdCard", "No ID card is detected in the image.")
    if truth.side != "front" or "reversed_side" in truth.variants:
        return FaceIdAnswer(
            "FailedOperation.ImageNoIdCard", "No ID card is detected in the image.", truth=truth
        )
    ident = truth.identity
    fields = card_fields(truth)
    quality = BLUR_QUALITY if "blur" in truth.variants else SHARP_QUALITY
    warnings = [
        code
        for variant, (flag, code) in FACEID_WARN_FLAGS.items()
        if variant in truth.variants and config.get(flag)
    ]
    threshold = config.get("Quality")
    if threshold not in (None, False) and quality < (50.0 if threshold is True else float(threshold)):
        warnings.append("-8001")
    if warnings:
        return FaceIdAnswer(
            "FailedOperation.OcrWarningOccurred",
            "OCR alert occurred",
            fields=fields,
            warnings=sorted(set(warnings)),
            quality=quality,
            truth=truth,
        )
    if "blur" in truth.variants:
        return FaceIdAnswer(
            "FailedOperation.ImageBlur", "The image is blurry.", fields=fields, quality=quality, truth=truth
        )
    entry = state.registry.get(ident.id_number)
    if entry is None:
        return FaceIdAnswer(
            "FailedOperation.IdNoExistSystem",
            "The number is not found in the database.",
            fields=fields,
            quality=quality,
            truth=truth,
        )
    if entry.name != ident.name:
        return FaceIdAnswer(
            "FailedOperation.IdNameMisMatch",
            "Name and ID card number mismatch.",
            fields=fields,
            quality=quality,
            truth=truth,
        )
    frac = _stable_fraction(ident.id_number, entry.portrait_seed, ident.portrait_seed)
    if entry.portrait_seed != ident.portrait_seed:
        sim = round(25 + 30 * frac, 2)
        return FaceIdAnswer(
            "FailedOperation.CompareLowSimilarity",
            "The comparison similarity did not reach the passing standard.",
            sim=sim,
            fields=fields,
            quality=quality,
            truth=truth,
        )
    return FaceIdAnswer(
        "Success", "成功", sim=round(85 + 14.9 * frac, 2), fields=fields, quality=quality, truth=truth
    )
