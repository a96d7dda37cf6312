"""docker-compose.yml stays valid, pinned and free of default secrets.

Docker does not run on this machine; ``docker-compose config`` (v1, Debian's package,
installed by scripts/test.sh) validates the file and its interpolation.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def _compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing in CI (scripts/test.sh installs it)")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    return found


def _config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_compose(), *args, "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("IDBATCH_", "POSTGRES_", "MINIO_"))},
    )


def test_compose_config_is_valid_as_it_is_and_with_the_example_env() -> None:
    """`docker-compose config -q` on a clean checkout: no .env, no secrets written yet."""
    plain = _config()
    assert plain.returncode == 0, plain.stderr
    example = _config("--env-file", str(ROOT / ".env.example"))
    assert example.returncode == 0, example.stderr


def test_secrets_are_files_never_environment_values_nor_defaults() -> None:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    declared = data["secrets"]
    assert all(spec["file"] == f"./secrets/{name}" for name, spec in declared.items())
    used: set[str] = set()
    for name, service in data["services"].items():
        image = service.get("image", "")
        assert image and ":" in image and not image.endswith(":latest"), (name, image)
        environment = service.get("environment") or {}
        for key, value in environment.items():
            # a secret's value never stands in the file nor comes from the environment
            assert not re.search(r"PASSWORD$|SECRET(_KEY)?$|_TOKEN$|PII_KEY$|ACCESS_KEY_ID$", key), (
                name,
                key,
            )
            assert "@" not in str(value), (name, key)  # no credentials in a URL
        used |= set(service.get("secrets", []))
        if "IDBATCH_SECRETS_DIR" in environment:
            assert {"idbatch_database_url", "idbatch_pii_key", "idbatch_gateway_secret"} <= set(
                service["secrets"]
            )
    assert used == set(declared)  # every declared secret is mounted somewhere, none undeclared


def test_the_secrets_script_writes_every_file_consistently_and_never_overwrites(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    folder = tmp_path / "secrets"
    done = subprocess.run(
        [str(ROOT / "scripts" / "compose-secrets.sh"), str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    declared = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["secrets"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(declared)
    assert folder.stat().st_mode & 0o777 == 0o700
    value = {p.name: p.read_text(encoding="utf-8").strip() for p in folder.iterdir()}
    assert f":{value['postgres_password']}@postgres:5432/" in value["idbatch_database_url"]
    assert f"aws_access_key_id = {value['minio_root_user']}" in value["aws_credentials"]
    assert f"aws_secret_access_key = {value['minio_root_password']}" in value["aws_credentials"]
    Fernet(value["idbatch_pii_key"].encode())  # a valid key
    assert len(value["idbatch_gateway_secret"]) >= 32

    before = value["idbatch_pii_key"]
    again = subprocess.run(
        [str(ROOT / "scripts" / "compose-secrets.sh"), str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr
    assert (folder / "idbatch_pii_key").read_text(encoding="utf-8").strip() == before


def test_idbatch_in_production_reads_its_secrets_from_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the compose services do: IDBATCH_ENV=production, IDBATCH_SECRETS_DIR, no secret
    in the environment; production refuses placeholders, so this loads only with the files."""
    from idbatch.settings import get_settings

    folder = tmp_path / "secrets"
    subprocess.run([str(ROOT / "scripts" / "compose-secrets.sh"), str(folder)], check=True, timeout=60)
    for key in [k for k in os.environ if k.startswith("IDBATCH_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("IDBATCH_ENV", "production")
    monkeypatch.setenv("IDBATCH_SECRETS_DIR", str(folder))
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.database_url == (folder / "idbatch_database_url").read_text(encoding="utf-8").strip()
        assert settings.pii_key is not None
        assert settings.pii_key.get_secret_value() == (folder / "idbatch_pii_key").read_text().strip()
        monkeypatch.setenv("IDBATCH_ACEDATA_TOKEN", "set-in-the-environment-wins")
        get_settings.cache_clear()
        assert get_settings().acedata_token.get_secret_value() == "set-in-the-environment-wins"
    finally:
        get_settings.cache_clear()


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert dockerfile.count("\nFROM ") + dockerfile.startswith("FROM ") >= 2
    assert re.search(r"^FROM python:3\.11\.\d+-slim", dockerfile, re.M)
    assert "\nUSER idbatch" in dockerfile and "HEALTHCHECK" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignored and ".git" in ignored
