"""Images that must never be sent (and billed): truncated, bombs, oversized in pixels."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from idbatch import images
from idbatch.providers import errors, limits
from simulator.cards import Identity, Truth, render


def _card() -> bytes:
    import datetime as dt

    ident = Identity(
        name="测试",
        sex="女",
        nation="汉",
        birth=dt.date(1990, 2, 3),
        address="北京市东城区测试路2号",
        id_number="110101199002030024",
        authority="北京市公安局东城分局",
        valid_from=dt.date(2015, 1, 1),
        valid_to=dt.date(2035, 1, 1),
        portrait_seed=5,
    )
    return render(Truth("front", ident, []), size=(428, 270), quality=70)


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_whole_card_passes() -> None:
    info = images.inspect(_card(), 10 * 1024 * 1024)
    assert info.format == "JPEG"


def test_a_truncated_jpeg_is_rejected_before_sending() -> None:
    data = _card()
    with pytest.raises(images.ImageRefError, match="truncated"):
        images.inspect(data[: int(len(data) * 0.6)], 10 * 1024 * 1024)


def test_a_truncated_png_is_rejected() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (400, 300), "white").save(buf, "PNG")
    data = buf.getvalue()
    with pytest.raises(images.ImageRefError):
        images.inspect(data[: len(data) // 2], 10 * 1024 * 1024)


def test_a_decompression_bomb_is_rejected_from_its_header() -> None:
    bomb = _png_header_only(15000, 15000)
    assert len(bomb) < 30_000
    with pytest.raises(images.ImageRefError, match="pixels"):
        images.inspect(bomb, 10 * 1024 * 1024)
    with pytest.raises(errors.ItemRejected, match="pixels"):
        limits.prepare(bomb, limits.TENCENT)


def test_fifty_megapixels_is_over_the_cap() -> None:
    with pytest.raises(images.ImageRefError, match="pixels"):
        images.header(_png_header_only(8000, 6250))


def test_the_provider_limits_use_the_same_bounds_as_ingest() -> None:
    assert limits.TENCENT.formats == images.SUPPORTED_FORMATS
    assert (limits.TENCENT.min_side, limits.TENCENT.max_side) == (images.MIN_SIDE_PX, images.MAX_SIDE_PX)


def test_bytes_after_the_end_of_a_jpeg_are_allowed() -> None:
    """Cameras append data after the end-of-image marker; the image itself is whole."""
    images.inspect(_card() + b"appended by a camera", 10 * 1024 * 1024)
