"""The demo through each provider, with injected faults: the record explains the bill exactly."""

from __future__ import annotations

import pytest
from rich.console import Console
from sqlalchemy import func, select

from app.demo import run_demo
from db.models import Attempt, Job
from db.session import session_scope
from idbatch.domain import AttemptOutcome
from idbatch.providers import KNOWN_PROVIDERS
from tests.conftest import Env

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("provider", KNOWN_PROVIDERS)
def test_demo_billing_matches_the_simulator(env: Env, provider: str) -> None:
    env()
    result = run_demo(
        Console(quiet=True), count=40, seed=5, concurrency=8, provider=provider, fault_rate=0.05
    )
    report = result.report
    assert report.accounted and report.done
    accounts = result.simulator_stats["accounts"].values()  # type: ignore[union-attr]
    billed = sum(int(a.get("billable", 0)) for a in accounts)
    assert report.billable_calls == billed
    assert report.in_doubt_calls == 0  # nothing died here
    with session_scope() as session:
        answered = session.scalar(
            select(func.count())
            .select_from(Attempt)
            .join(Job, Job.id == Attempt.job_id)
            .where(
                Job.batch_id == report.batch_id, Attempt.billable, Attempt.outcome == AttemptOutcome.ANSWERED
            )
        )
        sides_paid_twice = session.scalar(
            select(func.count()).select_from(
                select(Attempt.job_id, Attempt.side)
                .where(Attempt.billable)
                .group_by(Attempt.job_id, Attempt.side)
                .having(func.count() > 1)
                .subquery()
            )
        )
    assert answered == billed  # every billed call is an answered side on record
    assert sides_paid_twice == 0
    assert all(int(a.get("duplicate_billable", 0)) == 0 for a in accounts)
