"""Alembic as Alembic users expect: ``alembic upgrade head`` from the repo root, offline SQL,
no drift between the models and the migrations, and ``idbatch db`` for the installed wheel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from tests.conftest import Env, fresh_database

ROOT = Path(__file__).resolve().parents[2]
ALEMBIC = str(Path(sys.executable).parent / "alembic")

pytestmark = pytest.mark.integration


def _alembic(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDBATCH_")} | {
        "IDBATCH_DATABASE_URL": url
    }
    return subprocess.run(
        [ALEMBIC, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_alembic_upgrade_head_from_the_repo_root_leaves_no_drift(backend: str, tmp_path: Path) -> None:
    def check(url: str) -> None:
        up = _alembic(url, "upgrade", "head")
        assert up.returncode == 0, up.stderr
        drift = _alembic(url, "check")
        assert drift.returncode == 0, drift.stdout + drift.stderr
        assert "No new upgrade operations detected" in drift.stdout + drift.stderr
        down = _alembic(url, "downgrade", "base")
        assert down.returncode == 0, down.stderr

    if backend == "sqlite":
        check(f"sqlite:///{tmp_path / 'a.db'}")
    else:
        with fresh_database("idbatch_al") as url:
            check(url)


def test_offline_sql_for_a_dba_to_review() -> None:
    out = _alembic("postgresql+psycopg://postgres@127.0.0.1:5432/unused", "upgrade", "head", "--sql")
    assert out.returncode == 0, out.stderr
    assert "CREATE TABLE job" in out.stdout
    assert "pg_advisory_xact_lock" in out.stdout and "SET lock_timeout" in out.stdout


def test_idbatch_db_commands(env: Env, tmp_path: Path) -> None:
    env(database_url=f"sqlite:///{tmp_path / 'c.db'}")
    runner = CliRunner()
    history = runner.invoke(app, ["db", "history"])
    assert history.exit_code == 0 and "0001" in history.output and "0006" in history.output
    assert "(empty)" in runner.invoke(app, ["db", "current"]).output
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    current = runner.invoke(app, ["db", "current"]).output
    # the head and the one before it, from the scripts (branches landing add revisions)
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    root = Path(__file__).resolve().parents[2]
    script = ScriptDirectory.from_config(Config(str(root / "alembic.ini")))
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision  # type: ignore[union-attr]
    assert f"current: {head}" in current and f"head: {head}" in current
    assert runner.invoke(app, ["db", "downgrade"]).exit_code == 0  # one step back
    assert f"current: {previous}" in runner.invoke(app, ["db", "current"]).output


def test_production_submit_refuses_a_stale_schema_instead_of_migrating(env: Env, tmp_path: Path) -> None:
    env(database_url=f"sqlite:///{tmp_path / 'p.db'}", broker_url="redis://127.0.0.1:6379/15")
    manifest = tmp_path / "m.csv"
    manifest.write_text("external_ref,front_image\nA,a.jpg\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["submit", str(manifest)])
    assert result.exit_code == 2
    assert "idbatch db upgrade" in result.output
