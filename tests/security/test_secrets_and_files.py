"""Low findings of issue 13: production secrets validated at start and never echoed; files private."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from db.session import make_engine
from idbatch.settings import Settings
from producers.csv_manifest import ManifestError, read_manifest

GOOD = {
    "env": "production",
    "pii_key": Fernet.generate_key().decode(),
    "gateway_secret": "g" * 48,
    "acedata_token": "a-real-looking-token-0123456789",
}


def _settings(**values: str) -> Settings:
    return Settings(**{**GOOD, **values})  # type: ignore[arg-type]


def test_production_starts_with_real_secrets() -> None:
    assert _settings().env == "production"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gateway_secret", "short1"),  # far under 32 bytes
        ("gateway_secret", "compose-local-gateway-secret"),  # published in this repo
        ("gateway_secret", "replace-me-with-48-random-bytes-urlsafe-encoded"),  # .env.example
        ("pii_key", "k3Qk0m9o0nQyX1y4e5Vv2y4j4h2m0p3qZ9a8b7c6d5E="),  # the tests' key
        ("pii_key", "not-a-key-at-all"),  # malformed: refused at start, not at first use
        ("acedata_token", "sim-acedata-token"),
    ],
)
def test_weak_or_published_secrets_are_refused_without_echoing_them(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"IDBATCH_{field.upper()}") as refused:
        _settings(**{field: value})
    message = str(refused.value)
    assert f"IDBATCH_{field.upper()}" in message
    assert value not in message and value[:8] not in message


def test_sqlite_file_and_data_dir_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "data" / "idbatch.db"
        make_engine(f"sqlite:///{db}").dispose()
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        from idbatch.settings import private_dir

        assert stat.S_IMODE(private_dir(tmp_path / "d" / "e").stat().st_mode) == 0o700
    finally:
        os.umask(old)


def test_a_headerless_manifest_is_refused_without_printing_its_first_row() -> None:
    first_row = "A-1,images/a.jpg,,张三,310104199003071790\n"
    with pytest.raises(ManifestError) as refused:
        list(read_manifest(io.BytesIO(first_row.encode())))
    assert "张三" not in str(refused.value) and "310104199003071790" not in str(refused.value)


def test_a_200_mb_line_is_never_held_whole() -> None:
    import tracemalloc

    from producers.csv_manifest import MAX_LINE_BYTES, RowError

    data = io.BytesIO(
        b"external_ref,front_image\nA,a.jpg\nB," + b"x" * (64 * MAX_LINE_BYTES) + b"\nC,c.jpg\n"
    )
    tracemalloc.start()
    try:
        rows = list(read_manifest(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.row_number for r in rows] == [1, 2, 3]
    assert isinstance(rows[1], RowError) and "longer than" in rows[1].reason
    assert peak < 8 * MAX_LINE_BYTES  # bounded by the line limit, not the line
