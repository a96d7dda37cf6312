"""Image references: SSRF refusal, image checks, and the signed gateway URLs."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from idbatch import images
from idbatch.images import ImageRefError


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/a.jpg",
        "http://192.168.0.1/a.jpg",
        "http://127.0.0.1:8080/a.jpg",
        "http://[::1]/a.jpg",
        "http://[::ffff:10.0.0.1]/a.jpg",
        "http://localhost/a.jpg",
        "http://metadata.internal/a.jpg",
        "http://user:pw@example.com/a.jpg",
        # dressed up: a trailing root dot, percent-escapes (a review found these at ingest)
        "https://169.254.169.254./latest",
        "https://localhost./a.jpg",
        "https://metadata.internal./a.jpg",
        "https://%31%36%39.254.169.254/a.jpg",
    ],
)
def test_internal_urls_are_refused(url: str) -> None:
    with pytest.raises(ImageRefError):
        images.check_url(url, [], resolve=False)


def test_public_and_allowlisted_urls_pass() -> None:
    images.check_url("https://8.8.8.8/a.jpg", [], resolve=False)
    images.check_url("http://127.0.0.1/a.jpg", ["127.0.0.1"], resolve=False)


def test_name_resolving_to_loopback_is_refused_at_call_time() -> None:
    import socket

    # The machine's own hostname resolves (via /etc/hosts) to a loopback/private address:
    # a name that passes the ingest check must still be refused once resolved.
    host = socket.gethostname()
    images.check_url(f"http://{host}/a.jpg", [], resolve=False)
    with pytest.raises(ImageRefError, match="internal address"):
        images.check_url(f"http://{host}/a.jpg", [], resolve=True)


def jpeg(size: tuple[int, int] = (100, 60), fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buf, fmt)
    return buf.getvalue()


def test_inspect_accepts_supported_images() -> None:
    info = images.inspect(jpeg(), 10_000_000)
    assert (info.format, info.width, info.height) == ("JPEG", 100, 60)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"not an image at all", "not a readable image"),
        (jpeg(fmt="GIF"), "GIF not supported"),
        (jpeg((10, 10)), "outside"),
    ],
)
def test_inspect_names_what_is_wrong(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRefError, match=reason):
        images.inspect(data, 10_000_000)


def test_oversized_image_is_refused() -> None:
    with pytest.raises(ImageRefError, match="over the 100-byte limit"):
        images.inspect(jpeg(), 100)


def test_gateway_tokens_verify_expire_and_resist_tampering(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "a.jpg"
    token = images.sign_path(path, b"secret", ttl_s=60, now=1000.0)
    assert images.verify_token(token, b"secret", now=1030.0) == path.resolve()
    with pytest.raises(ImageRefError, match="expired"):
        images.verify_token(token, b"secret", now=1061.0)
    with pytest.raises(ImageRefError, match="bad signature"):
        images.verify_token(token, b"other", now=1030.0)
    expires, sig, _blob = token.split(".", 2)
    forged = images.sign_path(Path("/etc/passwd"), b"attacker", ttl_s=60, now=1000.0).split(".", 2)[2]
    with pytest.raises(ImageRefError, match="bad signature"):
        images.verify_token(f"{expires}.{sig}.{forged}", b"secret", now=1030.0)
