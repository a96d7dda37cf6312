"""Production mode: two real ``idbatch worker`` processes on Redis + Postgres.

The must-show of the foundation: a manifest of 500+ rows, malformed and GBK rows
included, every row ends in exactly one terminal state, the report adds up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.demo import DEMO_CONFIG
from app.embedded import current_app
from db.models import Job, Result
from db.reports import build_report
from db.session import session_scope
from producers.submit import submit_path
from simulator.cards import load_registry
from tests.conftest import Env, Simulator
from tests.integration.helpers import messy_manifest, wait_terminal

pytestmark = pytest.mark.integration


def idbatch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


@pytest.fixture
def prod_env(env: Env, pg_url: str, redis_url: str, simulator: Simulator, gateway: str) -> Env:
    env(database_url=pg_url, broker_url=redis_url, acedata_base_url=simulator.url)
    return env


@pytest.fixture
def workers(prod_env: Env) -> Iterator[list[subprocess.Popen[bytes]]]:
    child_env = dict(os.environ)
    child_env["IDBATCH_DATA_DIR"] = str(Path(child_env["IDBATCH_DATA_DIR"]) / "beat")
    procs = [
        subprocess.Popen(
            idbatch_cmd("worker", "--concurrency", "8", "--loglevel", "WARNING"),
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    # Retries wait in Postgres; beat's sweep publishes them when due, as in production.
    procs.append(
        subprocess.Popen(
            idbatch_cmd("beat", "--loglevel", "WARNING"),
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    yield procs
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_two_workers_on_redis_and_postgres_account_for_every_row(
    prod_env: Env, simulator: Simulator, workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    settings = prod_env()
    subprocess.run(idbatch_cmd("db", "upgrade"), check=True, env=dict(os.environ), capture_output=True)
    expected = messy_manifest(tmp_path / "cards", 520, seed=5)
    simulator.state.registry = load_registry(tmp_path / "cards" / "registry.jsonl")  # type: ignore[attr-defined]
    simulator.state.faults.update({"rate_5xx": 0.05, "latency_ms": 20})  # type: ignore[attr-defined]
    # Accounting is the point here; quota behaviour has its own tests (tests/ratelimit).
    simulator.state.quotas["acedata"] = 1e6  # type: ignore[attr-defined]
    current_app(settings)

    result = submit_path(
        tmp_path / "cards" / "manifest.csv",
        settings=settings,
        provider="acedata",
        config=DEMO_CONFIG,
    )
    counts = wait_terminal(result.batch_id, timeout_s=400)

    total = 520 + 8
    assert result.rows == total
    assert counts == expected
    assert all(proc.poll() is None for proc in workers), "a worker or beat died"
    with session_scope() as session:
        # exactly one job per input row, each in exactly one terminal state
        rows = session.scalars(select(Job.row_number).where(Job.batch_id == result.batch_id)).all()
        assert sorted(rows) == list(range(1, total + 1))
        dup = session.scalar(
            select(func.count()).select_from(
                select(Result.job_id).group_by(Result.job_id).having(func.count() > 1).subquery()
            )
        )
        assert dup == 0
        report = build_report(session, result.batch_id)
    assert report.accounted and report.done
    assert report.billable_calls == simulator.stats()["billable"]
    cli = subprocess.run(
        idbatch_cmd("report", str(result.batch_id), "--json"),
        check=True,
        env=dict(os.environ),
        capture_output=True,
        text=True,
    )
    data = json.loads(cli.stdout)
    assert data["accounted"] and sum(data["counts"].values()) == total
    assert data["counts"] == expected
