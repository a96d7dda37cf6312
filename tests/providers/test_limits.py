"""Image limits are enforced before sending: shrink when that keeps the image valid, else reject."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from idbatch.providers import errors, limits
from simulator.cards import read_truth
from tests.providers.conftest import card


def _noise(size: tuple[int, int], fmt: str = "PNG") -> bytes:
    rng = random.Random(1)
    im = Image.frombytes("RGB", size, bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 3)))
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def test_small_valid_images_pass_unchanged() -> None:
    data = card()
    prepared = limits.prepare(data, limits.TENCENT)
    assert prepared.data == data
    assert not prepared.changed


def test_encoded_size_counts_base64_and_urlencoding() -> None:
    data = bytes(range(256)) * 3
    assert limits.encoded_size(data, urlencoded=False) == 1024
    assert limits.encoded_size(data, urlencoded=True) == len(limits.form_value(data))


def test_an_oversized_image_is_reencoded_under_the_limit_and_keeps_its_truth() -> None:
    data = card()
    tight = limits.ImageLimits("tight", max_encoded_bytes=250_000, urlencoded=True, min_long_side=200)
    big = _noise((900, 600))
    assert limits.encoded_size(big, urlencoded=True) > 250_000
    prepared = limits.prepare(big, tight)
    assert prepared.changed
    assert prepared.encoded_size <= 250_000
    # Re-encoding a card keeps the JPEG comment that carries its synthetic ground truth.
    squeezed = limits.prepare(data, limits.ImageLimits("t", len(data) // 2, False, min_long_side=100))
    assert read_truth(squeezed.data) is not None


def test_an_image_that_cannot_be_shrunk_legibly_is_rejected_with_the_reason() -> None:
    tiny = limits.ImageLimits("tiny", max_encoded_bytes=2_000, urlencoded=False)
    with pytest.raises(errors.ItemRejected, match="cannot be shrunk without losing legibility"):
        limits.prepare(_noise((900, 600)), tiny)


def test_too_long_sides_are_downscaled_for_aliyun() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (5000, 800), (9, 9, 9)).save(buf, "JPEG")
    prepared = limits.prepare(buf.getvalue(), limits.ALIYUN)
    with Image.open(io.BytesIO(prepared.data)) as im:
        assert max(im.size) == 4096


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"plain text", "not a readable image"),
        (_noise((10, 300)), "under 15 px"),
        (_noise((40, 40), "GIF"), "format GIF not accepted"),
    ],
)
def test_invalid_images_are_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(errors.ItemRejected, match=reason):
        limits.prepare(data, limits.ALIYUN)
