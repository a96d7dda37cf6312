"""Inline card images written by the API are this user's only, whatever the umask."""

from __future__ import annotations

import base64
import io
import os
import stat
from pathlib import Path

from PIL import Image

from producers.api.cards import _store_inline, image_dir
from tests.conftest import Env


def test_inline_images_are_0600_in_0700_folders(env: Env, tmp_path: Path) -> None:
    settings = env(api_image_dir=str(tmp_path / "outside" / "api-images"))
    buf = io.BytesIO()
    Image.new("RGB", (64, 40), "white").save(buf, "JPEG")
    old = os.umask(0o022)
    try:
        rel = _store_inline("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(), settings)
    finally:
        os.umask(old)
    path = image_dir(settings) / rel
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(image_dir(settings).stat().st_mode) == 0o700
