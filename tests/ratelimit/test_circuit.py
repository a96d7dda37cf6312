"""Account circuit: open on AccountBlocked, park jobs without spending attempts, resume, probe."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app as cli_app
from db.migrate import upgrade
from db.models import Job
from db.session import session_scope
from idbatch.domain import JobStatus
from idbatch.providers import errors
from producers.submit import submit_path
from simulator.samples import generate_sample
from tests.conftest import Env
from workers import runtime as worker_runtime
from workers.circuit import CLOSED, HALF_OPEN, OPEN, Admission, CircuitBreaker, accounts, resume
from workers.gate import AccountGate
from workers.ratelimit import LocalLimiter
from workers.verify import process_job

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


class Wall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def db(env: Env) -> None:
    upgrade(env().database_url)


def _state(provider: str = "acedata", account: str = "default") -> str:
    with session_scope() as session:
        rows = [a for a in accounts(session) if a["provider"] == provider and a["account"] == account]
    return rows[0]["state"] if rows else CLOSED


@pytest.mark.usefixtures("db")
def test_blocked_opens_for_every_worker_and_resume_closes() -> None:
    wall = Wall()
    a = CircuitBreaker(probe_after_s=0, cache_s=0, wall=wall)
    b = CircuitBreaker(probe_after_s=0, cache_s=0, wall=wall)
    assert a.admit("acedata", "default").admission is Admission.ALLOW
    a.blocked("acedata", "default", "HTTP 401 invalid_token", "invalid_token")
    decision = b.admit("acedata", "default")
    assert decision.admission is Admission.DENY
    assert "invalid_token" in decision.reason
    assert decision.retry_in_s >= 300
    assert b.admit("acedata", "other").admission is Admission.ALLOW  # other accounts keep going
    with session_scope() as session:
        stopped = accounts(session, only_stopped=True)
        assert [(s["provider"], s["state"], s["provider_code"]) for s in stopped] == [
            ("acedata", OPEN, "invalid_token")
        ]
        assert resume(session, "acedata") == 1
    assert b.admit("acedata", "default").admission is Admission.ALLOW


@pytest.mark.usefixtures("db")
def test_repeated_blocks_keep_when_it_first_opened() -> None:
    wall = Wall()
    breaker = CircuitBreaker(cache_s=0, wall=wall)
    breaker.blocked("acedata", "default", "arrears", "x")
    wall.now += dt.timedelta(seconds=5)
    breaker.blocked("acedata", "default", "arrears again", "y")
    with session_scope() as session:
        (row,) = accounts(session)
    assert row["opened_at"] == T0.isoformat()
    assert row["reason"] == "arrears again"


@pytest.mark.usefixtures("db")
def test_one_probe_after_the_probe_period_then_closed_when_answered() -> None:
    wall = Wall()
    a = CircuitBreaker(probe_after_s=60, cache_s=0, wall=wall)
    b = CircuitBreaker(probe_after_s=60, cache_s=0, wall=wall)
    a.blocked("acedata", "default", "quota exhausted", None)
    wall.now += dt.timedelta(seconds=30)
    early = a.admit("acedata", "default")
    assert early.admission is Admission.DENY
    assert 30 <= early.retry_in_s <= 36
    wall.now += dt.timedelta(seconds=31)
    assert a.admit("acedata", "default").admission is Admission.PROBE
    assert b.admit("acedata", "default").admission is Admission.DENY  # only one probe at a time
    assert _state() == HALF_OPEN
    a.probe_answered("acedata", "default")
    assert _state() == CLOSED
    assert b.admit("acedata", "default").admission is Admission.ALLOW


@pytest.mark.usefixtures("db")
def test_a_blocked_probe_reopens() -> None:
    wall = Wall()
    breaker = CircuitBreaker(probe_after_s=60, cache_s=0, wall=wall)
    breaker.blocked("acedata", "default", "arrears", None)
    wall.now += dt.timedelta(seconds=61)
    assert breaker.admit("acedata", "default").admission is Admission.PROBE
    breaker.blocked("acedata", "default", "still in arrears", None)
    assert _state() == OPEN
    assert breaker.admit("acedata", "default").admission is Admission.DENY


@pytest.mark.usefixtures("db")
def test_state_is_cached_in_process() -> None:
    clock = [0.0]
    reader = CircuitBreaker(probe_after_s=0, cache_s=5, clock=lambda: clock[0])
    assert reader.admit("acedata", "default").admission is Admission.ALLOW
    CircuitBreaker(cache_s=0).blocked("acedata", "default", "arrears", None)
    assert reader.admit("acedata", "default").admission is Admission.ALLOW  # cached, no query
    clock[0] += 5
    assert reader.admit("acedata", "default").admission is Admission.DENY


@pytest.mark.usefixtures("db")
def test_gate_opens_the_circuit_and_probe_success_closes_it(env: Env) -> None:
    wall = Wall()
    breaker = CircuitBreaker(probe_after_s=60, cache_s=0, wall=wall)
    gate = AccountGate(env(), LocalLimiter(), breaker, sleep=lambda s: None)
    ticket = gate.enter("acedata", "default")
    with pytest.raises(errors.AccountBlocked), ticket:
        raise errors.AccountBlocked("HTTP 401", provider_code="invalid_token")
    assert _state() == OPEN
    parked = gate.enter("acedata", "default")
    assert parked.defer_s is not None
    assert parked.error_class == "account_blocked"
    wall.now += dt.timedelta(seconds=61)
    probe = gate.enter("acedata", "default")
    assert probe.probing
    assert probe.defer_s is None
    with probe:
        pass  # the provider answered
    assert _state() == CLOSED


def test_rate_limited_feeds_the_limiter_and_waits_are_slept(env: Env) -> None:
    slept: list[float] = []
    limiter = LocalLimiter()
    settings = env(rate_limits=json.dumps({"acedata": 10}), rate_headroom="0")
    gate = AccountGate(settings, limiter, CircuitBreaker(probe_after_s=0, cache_s=1e9), sleep=slept.append)
    gate.circuit._remember("acedata", "default", CLOSED, "", None)  # no database in this test
    first, second = gate.enter("acedata", "default"), gate.enter("acedata", "default")
    assert slept == [pytest.approx(0.1, abs=0.01)]  # the second waited for its token
    with first:
        pass
    with pytest.raises(errors.RateLimited), second:
        raise errors.RateLimited("HTTP 429", retry_after_s=30)
    assert limiter.success("acedata:default", gate.policy("acedata", "default")) < 10
    late = gate.enter("acedata", "default")
    assert late.defer_s is not None
    assert late.defer_s >= 29
    assert late.error_class == "throttled"


def test_jobs_claimed_while_open_go_back_without_spending_an_attempt(env: Env, tmp_path: Path) -> None:
    settings = env(gateway_url="http://127.0.0.1:9")
    upgrade(settings.database_url)
    generate_sample(tmp_path / "cards", 2, seed=3, defects=False)
    result = submit_path(
        tmp_path / "cards" / "manifest.csv", settings=settings, provider="acedata", enqueue=False
    )
    rt = worker_runtime.runtime()
    rt.gate().circuit.blocked("acedata", rt.provider("acedata").account, "arrears", "InArrears")
    with session_scope() as session:
        job_id = session.query(Job.id).filter(Job.batch_id == result.batch_id).order_by(Job.id).first()[0]
    outcome = process_job(job_id, rt)
    assert outcome.status is JobStatus.RETRY_WAIT
    assert outcome.retry_in_s is not None
    with session_scope() as session:
        job = session.get_one(Job, job_id)
        assert (job.status, job.attempt_count, job.error_class) == (
            JobStatus.RETRY_WAIT,
            0,
            "account_blocked",
        )
        assert job.next_attempt_at is not None

    runner = CliRunner()
    shown = runner.invoke(cli_app, ["status", str(result.batch_id)])
    assert shown.exit_code == 0, shown.output
    assert "InArrears" in shown.output
    assert "stopped_accounts" in shown.output
    resumed = runner.invoke(cli_app, ["accounts", "resume", "acedata"])
    assert resumed.exit_code == 0
    assert "resumed 1" in resumed.output
    with session_scope() as session:
        job = session.get_one(Job, job_id)
        next_at = (
            job.next_attempt_at.replace(tzinfo=dt.UTC)
            if job.next_attempt_at.tzinfo is None
            else job.next_attempt_at
        )
        assert next_at <= dt.datetime.now(dt.UTC)  # due again at once
