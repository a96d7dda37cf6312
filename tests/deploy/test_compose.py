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
SECRETS = (
    "POSTGRES_PASSWORD",
    "IDBATCH_PII_KEY",
    "IDBATCH_GATEWAY_SECRET",
    "IDBATCH_ACEDATA_TOKEN",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)


def _compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing in CI (scripts/test.sh installs it)")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    return found


def test_compose_config_is_valid_with_the_example_env() -> None:
    proc = subprocess.run(
        [_compose(), "--env-file", str(ROOT / ".env.example"), "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in SECRETS},
    )
    assert proc.returncode == 0, proc.stderr


def test_compose_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    proc = subprocess.run(
        [_compose(), "--env-file", str(empty), "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in SECRETS},
    )
    assert proc.returncode != 0
    assert "set " in proc.stderr  # the `${VAR:?set VAR ...}` message names what is missing


def test_every_image_is_pinned_and_no_secret_has_a_default() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    for name, service in data["services"].items():
        image = service.get("image", "")
        assert image and ":" in image and not image.endswith(":latest"), (name, image)
    for secret in SECRETS:
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses, secret
        assert all(u.startswith(":?") for u in uses), (secret, uses)


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert dockerfile.count("\nFROM ") + dockerfile.startswith("FROM ") >= 2
    assert re.search(r"^FROM python:3\.11\.\d+-slim", dockerfile, re.M)
    assert "\nUSER idbatch" in dockerfile and "HEALTHCHECK" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignored and ".git" in ignored
