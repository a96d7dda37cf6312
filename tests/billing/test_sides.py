"""Two-sided providers: a side answered before the other failed is kept, never paid again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.demo import provider_env
from db.migrate import upgrade
from db.models import Attempt, SideAnswer
from db.session import session_scope
from idbatch.domain import AttemptOutcome, JobStatus
from idbatch.providers import errors
from idbatch.providers.aliyun_market import AliyunMarketProvider
from idbatch.providers.tencent_ocr import TencentOcrProvider
from idbatch.servers import BackgroundServer
from simulator.cards import load_registry
from tests.conftest import Env
from tests.durability.conftest import Stack, make_sample
from tests.providers.conftest import APPCODE, SECRET_ID, Sim, card, sim

pytestmark = pytest.mark.integration

__all__ = ["sim"]

ACCOUNTS = {"ocr": f"ocr:{SECRET_ID}", "aliyun": f"aliyun:{APPCODE}"}


def _fail_first_back(provider: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the first BACK call fail as a 503 would; record every side actually sent."""
    sent: list[str] = []
    original = type(provider)._call

    def call(self: Any, request: Any, side: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(side)
        if side == "back" and sent.count("back") == 1:
            raise errors.Unavailable("HTTP 503", http_status=503, side="back", calls=list(kwargs["done"]))
        return original(self, request, side, *args, **kwargs)

    monkeypatch.setattr(type(provider), "_call", call)
    return sent


@pytest.mark.parametrize("which", ["ocr", "aliyun"])
def test_after_a_back_failure_the_retry_sends_only_the_back(
    sim: Sim, which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider: TencentOcrProvider | AliyunMarketProvider = sim.ocr() if which == "ocr" else sim.aliyun()
    sent = _fail_first_back(provider, monkeypatch)
    request = sim.request(card("front"), card("back"), config={})

    with pytest.raises(errors.Unavailable) as failed:
        provider.verify(request)
    assert set(failed.value.answered) == {"front"}  # the paid front comes back with the error
    assert [c.side for c in failed.value.calls] == ["front"]
    billed_once = int(sim.stats(ACCOUNTS[which]).get("billable", 0))
    assert billed_once == 1

    retry = type(request)(**{**request.__dict__, "answered": json.loads(json.dumps(failed.value.answered))})
    answer = provider.verify(retry)
    assert sent == ["front", "back", "back"]  # the front was never sent again
    assert [c.side for c in answer.calls] == ["back"]
    assert answer.result.name and answer.result.id_number  # the stored front still fills the card
    assert answer.result.valid_to is not None  # and the back's fields are there
    assert int(sim.stats(ACCOUNTS[which]).get("billable", 0)) == 2


@contextmanager
def _ocr_stack(env: Env, pg_db: str, tmp_path: Path, **overrides: str) -> Iterator[Stack]:
    from simulator.app import create_app
    from simulator.state import SimState

    manifest, registry = make_sample(tmp_path / "cards", 4, seed=31)
    state = SimState(registry=load_registry(registry), seed=4)
    with BackgroundServer(create_app(state)) as simulator:
        values = {
            k.removeprefix("IDBATCH_").lower(): v
            for k, v in provider_env("tencent_ocr", simulator.url).items()
        }
        settings = env(database_url=pg_db, requeue_after_s="0.2", **{**values, **overrides})
        upgrade(settings.database_url)
        yield Stack(settings, manifest, state, simulator.url)


@pytest.fixture
def ocr_stack(env: Env, pg_db: str, gateway: str, tmp_path: Path) -> Iterator[Stack]:
    with _ocr_stack(env, pg_db, tmp_path, ratelimit_backend="off") as stack:
        yield stack


def test_the_worker_keeps_the_paid_front_and_finishes_the_card_with_the_back(
    ocr_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = ocr_stack
    sent: list[str] = []
    original = TencentOcrProvider._call

    def call(self: Any, request: Any, side: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(f"{request.job_id}:{side}")
        if side == "back" and sent.count(f"{request.job_id}:back") == 1:
            raise errors.Unavailable("HTTP 503", http_status=503, side="back", calls=list(kwargs["done"]))
        return original(self, request, side, *args, **kwargs)

    monkeypatch.setattr(TencentOcrProvider, "_call", call)
    batch = stack.submit()
    stack.run_open(batch)

    jobs = stack.jobs(batch)
    assert {j.status for j in jobs} <= {JobStatus.PASSED, JobStatus.NEGATIVE}
    for job in jobs:
        assert sent.count(f"{job.id}:front") == 1  # never paid twice
        assert sent.count(f"{job.id}:back") == 2  # failed once, then answered
    with session_scope() as session:
        kept = session.scalar(select(func.count()).select_from(SideAnswer))
        billable = session.scalar(select(func.count()).where(Attempt.billable))
        in_flight = session.scalar(select(func.count()).where(Attempt.outcome == AttemptOutcome.IN_FLIGHT))
    assert kept == len(jobs)
    assert (
        billable == 2 * len(jobs) == stack.sim_state.stats_json()["accounts"][f"ocr:{SECRET_ID}"]["billable"]
    )  # type: ignore[attr-defined]
    assert in_flight == 0


def test_a_back_with_no_rate_slot_soon_waits_unsent_and_the_front_is_kept(
    env: Env, pg_db: str, gateway: str, tmp_path: Path
) -> None:
    """BACK takes its own rate slot; none within max_wait defers the card, FRONT kept.

    At 4 calls/s a slot is 0.25 s after the last, and a 0.1 s max_wait refuses it: every
    BACK asked for right after its FRONT is deferred by the real limiter (nothing is
    patched). The retry sends only the BACK, no attempt is spent on the deferral, and
    no row claims a call that was never sent.
    """
    deferred: list[tuple[int, str]] = []
    original = TencentOcrProvider._call

    def call(self: Any, request: Any, side: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, request, side, *args, **kwargs)
        except errors.Deferred:
            deferred.append((request.job_id, side))
            raise

    limits = {
        "ratelimit_backend": "local",
        "rate_limits": json.dumps({"tencent_ocr": 4}),
        "rate_headroom": "0",
        "ratelimit_max_wait_s": "0.1",
    }
    with (
        _ocr_stack(env, pg_db, tmp_path, **limits) as stack,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setattr(TencentOcrProvider, "_call", call)  # observes; the limiter decides
        batch = stack.submit()
        stack.run_open(batch)
        jobs = stack.jobs(batch)
        stats = stack.sim_state.stats_json()["accounts"][f"ocr:{SECRET_ID}"]  # type: ignore[attr-defined]

    assert deferred, "no BACK was deferred: the test did not exercise its point"
    assert {side for _, side in deferred} == {"back"}
    assert {j.status for j in jobs} <= {JobStatus.PASSED, JobStatus.NEGATIVE}
    assert all(j.attempt_count == 1 for j in jobs)  # a deferral spends no attempt
    with session_scope() as session:
        rows = session.execute(select(Attempt.job_id, Attempt.side, Attempt.outcome, Attempt.billable)).all()
    for job in jobs:
        sides = sorted(r.side for r in rows if r.job_id == job.id)
        assert sides == ["back", "front"]  # one row per call sent: FRONT once, BACK once
    assert all(r.outcome == AttemptOutcome.ANSWERED and r.billable for r in rows)
    assert stats["billable"] == stats["calls"] == 2 * len(jobs)  # never paid twice
    assert stats.get("over_quota", 0) == 0


def test_each_call_row_says_when_that_call_was_sent(ocr_stack: Stack) -> None:
    """A BACK row's started_at is its own send time, after FRONT answered, not the job's start."""
    stack = ocr_stack
    stack.sim_state.faults.update({"latency_ms": 120, "latency_sigma": 0.0})  # type: ignore[attr-defined]
    batch = stack.submit()
    stack.run_open(batch)
    with session_scope() as session:
        rows = session.execute(
            select(Attempt.job_id, Attempt.side, Attempt.started_at, Attempt.latency_ms)
        ).all()
    jobs = {r.job_id for r in rows}
    assert len(jobs) == 4
    for job_id in jobs:
        front = next(r for r in rows if r.job_id == job_id and r.side == "front")
        back = next(r for r in rows if r.job_id == job_id and r.side == "back")
        gap = (back.started_at - front.started_at).total_seconds()
        assert gap >= 0.1, gap  # BACK went out once FRONT's 120 ms answer was in
        assert front.latency_ms >= 100
