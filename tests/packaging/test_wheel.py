"""The installed wheel, not the source tree, must run: an editable install hides what it forgets.

Builds the wheel, installs it (non-editable, the embedded default's dependencies only)
into a fresh virtual environment and runs ``idbatch demo --count 20`` from an empty
directory, as a new user would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, (
        f"{cmd[:3]} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout + proc.stderr


def test_wheel_runs_the_demo_from_an_empty_directory(tmp_path: Path) -> None:
    # Build from a copy: setuptools leaves build/ in the tree it builds.
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "dist", ".*_cache", ".idbatch", "__pycache__"
        ),
    )
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], cwd=tmp_path)
    (wheel,) = dist.glob("idbatch-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path)

    empty = tmp_path / "empty"
    empty.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IDBATCH_", "PYTHON", "VIRTUAL_ENV"))}
    out = _run(
        [str(env_dir / "bin" / "idbatch"), "demo", "--count", "20", "--seed", "3"], cwd=empty, env=clean
    )
    assert "all rows accounted for" in out
    # It ran from the wheel: nothing of the source tree was importable from there.
    where = _run([str(python), "-c", "import workers, app; print(workers.__file__, app.__file__)"], cwd=empty)
    assert str(ROOT) not in where and "site-packages" in where
    # The embedded default keeps the install small: no Postgres driver, Redis or boto3.
    missing = _run(
        [
            str(python),
            "-c",
            "import importlib.util as u; print([m for m in ('psycopg','redis','boto3') if u.find_spec(m)])",
        ],
        cwd=empty,
    )
    assert missing.strip() == "[]"
    # The wheel carries the migrations and the limiter's Lua script.
    names = _run([str(python), "-m", "zipfile", "-l", str(wheel)], cwd=tmp_path)
    assert "migrations/versions/0001_initial_schema.py" in names
    assert "workers/ratelimit.lua" in names
