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
    # the head and the one before it, read from the scripts (branches add migrations)
    from alembic.script import ScriptDirectory

    from db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_revision(script.get_current_head())
    assert f"current: {head.revision}" in current and f"head: {head.revision}" in current
    assert runner.invoke(app, ["db", "downgrade"]).exit_code == 0  # one step back
    assert f"current: {head.down_revision}" in runner.invoke(app, ["db", "current"]).output


def test_production_submit_refuses_a_stale_schema_instead_of_migrating(env: Env, tmp_path: Path) -> None:
    env(database_url=f"sqlite:///{tmp_path / 'p.db'}", broker_url="redis://127.0.0.1:6379/15")
    manifest = tmp_path / "m.csv"
    manifest.write_text("external_ref,front_image\nA,a.jpg\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["submit", str(manifest)])
    assert result.exit_code == 2
    assert "idbatch db upgrade" in result.output


def test_upgrading_an_embedded_database_keeps_every_job(env: Env, tmp_path: Path) -> None:
    """A migration that rebuilds `batch` on SQLite (batch mode: copy, DROP, rename) must not run
    the ON DELETE CASCADE of `job` on the way: 0009 once deleted every job of an embedded install."""
    from sqlalchemy import create_engine, text

    from db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    env(database_url=url)
    upgrade(url, "0006")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO batch (id, source, kind, state, provider, provider_config, total_rows,"
                " ingest_complete) VALUES (1, 's', 'backfill', 'active', 'acedata', '{}', 2, 1)"
            )
        )
        for job_id in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO job (id, batch_id, row_number, status, attempt_count, claim_seq)"
                    " VALUES (:id, 1, :id, 'passed', 1, 1)"
                ),
                {"id": job_id},
            )
    upgrade(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM job WHERE batch_id = 1")).scalar() == 2
        assert conn.execute(text("SELECT count(*) FROM batch")).scalar() == 1
        assert conn.execute(text("PRAGMA foreign_key_check")).fetchall() == []
    engine.dispose()
