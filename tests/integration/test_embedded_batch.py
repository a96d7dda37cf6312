"""A real batch on the embedded default: SQLite, in-memory broker, in-process worker,
the simulator and image gateway over real HTTP on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from app.demo import DEMO_CONFIG
from app.embedded import embedded_stack
from db.models import Attempt, Job, Result
from db.reports import build_report
from db.session import session_scope
from producers.submit import submit_path
from simulator.cards import load_registry
from tests.conftest import Env, Simulator
from tests.integration.helpers import messy_manifest, wait_terminal

pytestmark = pytest.mark.integration


def test_embedded_batch_accounts_for_every_row_and_bills_once(
    env: Env, simulator: Simulator, gateway: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    expected = messy_manifest(tmp_path / "cards", 120, seed=21)
    simulator.state.registry = load_registry(tmp_path / "cards" / "registry.jsonl")  # type: ignore[attr-defined]
    simulator.state.faults.update({"rate_5xx": 0.1, "rate_429": 0.05})  # type: ignore[attr-defined]
    settings = env(acedata_base_url=simulator.url)

    with embedded_stack(settings, concurrency=8):
        result = submit_path(
            tmp_path / "cards" / "manifest.csv",
            settings=settings,
            provider="acedata",
            config=DEMO_CONFIG,
        )
        counts = wait_terminal(result.batch_id, timeout_s=240)

    total = 120 + 8
    assert result.rows == total
    assert counts == expected
    with session_scope() as session:
        report = build_report(session, result.batch_id)
        assert report.accounted and report.done and report.jobs == total
        # our billing record agrees with the provider's
        assert report.billable_calls == simulator.stats()["billable"]
        # exactly one billable answer per answered job, and never a second result
        answered = session.scalars(select(Result.job_id)).all()
        assert len(answered) == len(set(answered)) == counts.get("passed", 0) + counts.get("negative", 0)
        billed = session.scalars(select(Attempt.job_id).where(Attempt.billable)).all()
        assert sorted(billed) == sorted(answered)
        # retries really happened (faults were injected) and were recorded as attempts
        assert report.retried_jobs > 0 and report.attempts > len(billed)
        # PII is not stored in plain text
        raw = session.execute(select(Result.id_number_enc, Result.name_enc, Result.raw_enc)).all()
        jobs = session.scalars(select(Job.claimed_id_enc).where(Job.claimed_id_enc.is_not(None))).all()
    manifest_text = (tmp_path / "cards" / "manifest.csv").read_bytes().decode("utf-8", "replace")
    numbers = [line.split(",")[4].strip() for line in manifest_text.splitlines()[1:121]]
    numbers = [n for n in numbers if len(n) == 18]
    assert numbers
    blobs = b"".join(b for row in raw for b in row if b) + b"".join(jobs)
    assert not any(n.encode() in blobs for n in numbers)
    # ... and never reaches the logs
    out, err = capfd.readouterr()
    assert not any(n in out or n in err for n in numbers)
