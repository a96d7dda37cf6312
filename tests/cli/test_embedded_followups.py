"""On the embedded default, commands that send jobs again process them in the same process.

The in-memory broker lives in one process: a rerun or retry-failed that only published
would leave its jobs queued for good (a new-user review found exactly that).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import app
from db.models import Batch, Job
from db.session import session_scope
from idbatch.domain import TERMINAL_STATUSES, BatchKind, JobStatus
from simulator.cards import load_registry
from simulator.samples import generate_sample
from tests.conftest import Env, Simulator

pytestmark = pytest.mark.integration


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def statuses(batch_id: int) -> dict[JobStatus, int]:
    with session_scope() as session:
        rows = session.execute(
            select(Job.status, func.count()).where(Job.batch_id == batch_id).group_by(Job.status)
        ).all()
    return {JobStatus(s): n for s, n in rows}


def test_rerun_and_retry_failed_are_processed_in_process(
    env: Env, simulator: Simulator, tmp_path: Path
) -> None:
    sample = generate_sample(tmp_path / "cards", 10, seed=5, defects=False)
    simulator.state.registry = load_registry(tmp_path / "cards" / "registry.jsonl")  # type: ignore[attr-defined]
    env(acedata_base_url=simulator.url)
    code, out = invoke("submit", str(tmp_path / "cards" / "manifest.csv"), "--provider", "acedata")
    assert code == 0, out
    with session_scope() as session:
        parent = session.scalars(select(Batch.id).where(Batch.kind == BatchKind.BACKFILL)).one()
    assert set(statuses(parent)) <= TERMINAL_STATUSES

    billed_before = simulator.stats()["billable"]
    code, out = invoke("rerun", str(parent))
    assert code == 0, out
    with session_scope() as session:
        child = session.scalars(select(Batch.id).where(Batch.kind == BatchKind.RERUN)).one()
    done = statuses(child)
    assert sum(done.values()) == 10 and set(done) <= TERMINAL_STATUSES  # none left queued
    assert simulator.stats()["billable"] == billed_before + 10  # a rerun makes fresh calls

    with session_scope() as session:  # one job failed: retry-failed runs it again, here
        job = session.scalars(select(Job).where(Job.batch_id == child).limit(1)).one()
        job.status, job.last_error = JobStatus.FAILED, "made to fail by the test"
    code, out = invoke("retry-failed", str(child))
    assert code == 0, out
    assert JobStatus.FAILED not in statuses(child) and set(statuses(child)) <= TERMINAL_STATUSES

    # run-now of a schedule serves the lineage's images as `rerun` does (it served none:
    # every card failed with the provider's DownLoadError after six attempts)
    billed_before = simulator.stats()["billable"]
    code, out = invoke("schedule", "add", "nightly", "--batch", str(parent), "--cron", "0 2 * * *")
    assert code == 0, out
    code, out = invoke("schedule", "run-now", "nightly")
    assert code == 0, out
    with session_scope() as session:
        fired = session.scalar(select(func.max(Batch.id)).where(Batch.kind == BatchKind.RERUN))
    assert fired is not None and fired != child
    done = statuses(fired)
    assert sum(done.values()) == 10 and JobStatus.FAILED not in done and set(done) <= TERMINAL_STATUSES
    assert simulator.stats()["billable"] == billed_before + 10

    # mistakes are one line and exit 2 (a new-user review found them accepted, or raw)
    for args, reason in [
        (("drift", str(fired), "--against", "999"), "batch 999 does not exist"),
        (("drift", str(fired), "--against", str(fired)), "itself"),
        (("drift", str(fired), "--limit", "-1"), "--limit takes 0 or more"),
        (("history", "--id-number", "12345"), "must be 17 digits"),
        (("history", "--id-number", ""), "--id-number"),
        (("rerun-release", str(parent)), "is not a rerun"),
        (("rerun-release", str(fired), "--budget", "-1"), "--budget takes 0 or more"),
    ]:
        code, out = invoke(*args)
        assert (code, len(out.strip().splitlines())) == (2, 1), (args, out)
        assert reason in out, (args, out)
    # an ID number as forms print it, in groups of 6-8-4, is the same card
    number = sample[0].values["id_number"]
    code, out = invoke("history", "--id-number", f"{number[:6]} {number[6:14]} {number[14:]}")
    assert code == 0, out
    entries = json.loads(out)
    assert [e["batch"] for e in entries] == [parent, child, fired]  # oldest first
    assert all(e["answered_at"].endswith("+00:00") for e in entries)  # UTC, as export says
    code, out = invoke("schedule", "add", " ", "--batch", str(parent), "--cron", "0 2 * * *")
    assert code == 2 and "needs a name" in out


def test_the_api_refuses_the_in_memory_broker(env: Env) -> None:
    code, out = invoke("api", "--port", "0")
    assert code == 2 and "needs a real broker" in out
