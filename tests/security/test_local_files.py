"""Review findings 1 and 4 (issue 13): local files stay in their folder; the gateway serves
images under its roots only; one neutral reason for every unusable local reference."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from idbatch import images
from idbatch.gateway import create_app
from idbatch.servers import BackgroundServer

SECRET = b"test-gateway-secret-0123456789abcdef"


def _png(path: Path) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", (64, 40), "white").save(buf, "PNG")
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    manifest_dir = tmp_path / "drop"
    (manifest_dir / "images").mkdir(parents=True)
    inside = _png(manifest_dir / "images" / "a.png")
    outside = _png(tmp_path / "outside.png")
    secret_file = tmp_path / "pii.key"
    secret_file.write_text("not for anyone")
    (manifest_dir / "images" / "link.png").symlink_to(outside)
    return {"dir": manifest_dir, "inside": inside, "outside": outside, "secret": secret_file}


@pytest.mark.parametrize("ref", ["../outside.png", "images/../../outside.png", "images/link.png"])
def test_a_reference_escaping_the_manifest_folder_is_refused(layout: dict[str, Path], ref: str) -> None:
    with pytest.raises(images.ImageRefError) as refused:
        images.resolve_local(ref, layout["dir"])
    assert str(refused.value) == images.UNREADABLE


def test_absolute_paths_and_file_urls_are_refused_at_ingest(layout: dict[str, Path]) -> None:
    assert images.local_ref_problem(str(layout["outside"])) is not None
    with pytest.raises(images.ImageRefError, match="file://"):
        images.classify_ref(f"file://{layout['outside']}")
    assert images.resolve_local("images/a.png", layout["dir"]) == layout["inside"].resolve()


def test_missing_and_not_an_image_read_the_same(layout: dict[str, Path]) -> None:
    reasons = set()
    for ref in ("images/none.png", "images"):
        with pytest.raises(images.ImageRefError) as refused:
            images.read_local(images.resolve_local(ref, layout["dir"]), 1 << 20)
        reasons.add(str(refused.value))
    assert reasons == {images.UNREADABLE}


def test_gateway_serves_only_images_under_its_roots(layout: dict[str, Path]) -> None:
    with BackgroundServer(create_app(SECRET, [layout["dir"]])) as gw, httpx.Client() as client:

        def get(path: Path) -> int:
            return client.get(images.gateway_url(gw.url, path, SECRET, 60)).status_code

        assert get(layout["inside"]) == 200
        assert get(layout["outside"]) == 404  # validly signed, outside the roots
        assert get(layout["dir"] / "images" / "link.png") == 404  # a symlink pointing out
        assert get(Path("/etc/passwd")) == 404
        text_inside = layout["dir"] / "notes.txt"
        text_inside.write_text("x")
        assert get(text_inside) == 404  # not an image
        assert client.get(f"{gw.url}/i/1.{'é' * 24}.abc").status_code == 403  # not a 500
