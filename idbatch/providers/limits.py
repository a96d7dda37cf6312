"""Per-provider request limits on images, enforced before anything is sent.

A provider that refuses an oversized image still costs a round trip, a rate-limit slot
and sometimes a billed call; so each adapter checks the image against its vendor's
documented limits first. An image that is merely too large is re-encoded (JPEG, lower
quality) and, if needed, downscaled — as long as the result stays legible (long side at
least ``min_long_side``); anything else is ``ItemRejected`` with the reason.

    provider        size limit (measured on)            formats         sides (px)
    Tencent (both)  7 MB after base64                   JPG PNG BMP     15..8192 (ours)
    Aliyun vendor   4 MB after base64 + urlencode       JPG PNG BMP     15..4096

Tencent documents no side limits; we apply the ingest bounds of ``idbatch.images``.
"""

from __future__ import annotations

import base64
import io
import math
import threading
from dataclasses import dataclass
from urllib.parse import quote

from PIL import Image

from idbatch import images
from idbatch.providers import errors

MB = 1024 * 1024


@dataclass(frozen=True)
class ImageLimits:
    name: str
    max_encoded_bytes: int
    urlencoded: bool  # measured after base64 *and* urlencode (form bodies)
    formats: frozenset[str] = images.SUPPORTED_FORMATS
    min_side: int = images.MIN_SIDE_PX
    max_side: int = images.MAX_SIDE_PX
    min_long_side: int = 800  # never shrink a card below this: it would stop being legible


TENCENT = ImageLimits("tencent", 7 * MB, urlencoded=False)
ALIYUN = ImageLimits("aliyun", 4 * MB, urlencoded=True, max_side=4096)


@dataclass(frozen=True)
class Prepared:
    data: bytes
    encoded_size: int
    changed: bool


def encoded_size(data: bytes, urlencoded: bool) -> int:
    """Size of ``data`` as it travels: base64 (4 per 3 bytes), optionally urlencoded."""
    if not urlencoded:
        return 4 * math.ceil(len(data) / 3)
    b64 = base64.b64encode(data)
    # '+', '/' and '=' become %2B, %2F, %3D: two extra characters each.
    return len(b64) + 2 * (b64.count(b"+") + b64.count(b"/") + b64.count(b"="))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def form_value(data: bytes) -> str:
    """base64 then urlencode, as form bodies carry it."""
    return quote(b64(data), safe="")


def prepare(data: bytes, limits: ImageLimits) -> Prepared:
    """The image as it may be sent under ``limits``, or ``ItemRejected`` saying why not."""
    if not data:
        raise errors.ItemRejected(f"{limits.name}: image is empty")
    try:
        fmt, width, height = images.header(data)
    except images.ImageRefError as exc:
        raise errors.ItemRejected(f"{limits.name}: {exc}") from exc
    if fmt not in limits.formats:
        allowed = "/".join(sorted(limits.formats))
        raise errors.ItemRejected(f"{limits.name}: image format {fmt} not accepted ({allowed})")
    if min(width, height) < limits.min_side:
        raise errors.ItemRejected(
            f"{limits.name}: image is {width}x{height} px, shorter side under {limits.min_side} px"
        )
    size = encoded_size(data, limits.urlencoded)
    if max(width, height) <= limits.max_side and size <= limits.max_encoded_bytes:
        return Prepared(data, size, changed=False)
    return _shrink(data, limits, width, height, size)


# Decoding is the one step whose memory grows with the image (40 MP RGB is 120 MB): at
# most this many at once per process, however many worker threads ask.
_DECODES = threading.BoundedSemaphore(2)


def _shrink(data: bytes, limits: ImageLimits, width: int, height: int, size: int) -> Prepared:
    with _DECODES:
        return _shrink_decoded(data, limits, width, height, size)


def _shrink_decoded(data: bytes, limits: ImageLimits, width: int, height: int, size: int) -> Prepared:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        comment = im.info.get("comment")
        base = im.convert("RGB")
    scale = min(1.0, limits.max_side / max(width, height))
    while True:
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        if max(w, h) < limits.min_long_side or min(w, h) < limits.min_side:
            raise errors.ItemRejected(
                f"{limits.name}: image is {size} bytes encoded ({width}x{height} px), over the "
                f"{limits.max_encoded_bytes}-byte limit, and cannot be shrunk without losing legibility"
            )
        frame = base if (w, h) == base.size else base.resize((w, h), Image.Resampling.LANCZOS)
        for quality in (90, 80, 70):
            out = io.BytesIO()
            extra = {"comment": comment} if isinstance(comment, bytes) else {}
            frame.save(out, "JPEG", quality=quality, optimize=True, **extra)
            candidate = out.getvalue()
            new_size = encoded_size(candidate, limits.urlencoded)
            if new_size <= limits.max_encoded_bytes:
                return Prepared(candidate, new_size, changed=True)
        scale *= 0.75
