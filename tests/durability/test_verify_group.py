"""One message for a group of jobs (issue 17): each job still claimed, called and recorded alone."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from celery.worker import state as worker_state
from sqlalchemy import update

import workers.tasks as tasks
import workers.verify as verify_module
from db import claims, jobs
from db.models import Job, utcnow
from db.session import connection_scope, session_scope
from dispatch.app import VERIFY, VERIFY_MANY
from dispatch.publish import group_size, publish_jobs
from idbatch.domain import TERMINAL_STATUSES, JobStatus
from tests.conftest import Env
from tests.durability.conftest import Stack
from workers.runtime import runtime
from workers.verify import process_job


def test_group_size_leaves_short_lists_in_parallel(env: Env) -> None:
    settings = env(verify_group="8", worker_concurrency="4")
    assert group_size(3, settings) == 1  # fewer jobs than threads: one task each
    assert group_size(10, settings) == 2  # still a group for every thread
    assert group_size(1000, settings) == 8
    assert group_size(1000, env(verify_group="1", worker_concurrency="4")) == 1
    assert group_size(1000, env(verify_group="8", worker_concurrency="4", celery_events="true")) == 1


class _App:
    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    @contextlib.contextmanager
    def producer_or_acquire(self) -> Iterator[None]:
        yield None

    def send_task(self, name: str, args: tuple[Any, ...], producer: object = None) -> None:
        self.sent.append((name, args))


def test_publish_jobs_sends_groups_that_cover_every_id_once(env: Env) -> None:
    env(verify_group="4", worker_concurrency="2")
    app = _App()
    publish_jobs(range(1, 11), app)  # type: ignore[arg-type]
    assert [name for name, _ in app.sent] == [VERIFY_MANY] * 3
    assert [args[0] for _, args in app.sent] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    few = _App()
    publish_jobs([1, 2, 3], few)  # type: ignore[arg-type]
    assert few.sent == [(VERIFY, (1,)), (VERIFY, (2,)), (VERIFY, (3,))]


def test_a_group_runs_each_job_once_and_a_redelivered_group_pays_nothing(stack: Stack) -> None:
    batch = stack.submit()
    ids = [j.id for j in stack.jobs(batch)]
    first = tasks.run_group(ids, runtime())
    assert sum(first.values()) == len(ids) and "skipped" not in first
    assert set(stack.statuses(batch)) <= TERMINAL_STATUSES
    again = tasks.run_group(ids, runtime())  # the message redelivered after its jobs finished
    assert again == {"skipped": len(ids)}
    assert stack.stats()["billable"] == len(ids)
    assert stack.stats()["duplicate_billable"] == 0


def test_a_crashing_job_does_not_stop_the_rest_of_its_group(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = stack.submit()
    ids = [j.id for j in stack.jobs(batch)]

    real = verify_module._process_claimed

    def crash_first(claimed: Any, *args: Any) -> Any:
        # after the (group's) claim, as a bug in the job's processing would
        if claimed.job_id == ids[0]:
            raise RuntimeError("a bug")
        return real(claimed, *args)

    monkeypatch.setattr(verify_module, "_process_claimed", crash_first)
    counts = tasks.run_group(ids, runtime())
    assert counts["crashed"] == 1 and sum(counts.values()) == len(ids)
    jobs = stack.jobs(batch)
    assert jobs[0].status is not JobStatus.RUNNING
    assert {j.status for j in jobs[1:]} <= TERMINAL_STATUSES


def test_on_shutdown_a_group_hands_back_the_jobs_it_has_not_started(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = stack.submit()
    ids = [j.id for j in stack.jobs(batch)]
    handed: list[int] = []
    monkeypatch.setattr(tasks, "publish_jobs", lambda rest, app=None: handed.extend(rest))
    calls = iter([False, False])  # two jobs run, then SIGTERM arrives
    monkeypatch.setattr(tasks, "_stopping", lambda: next(calls, True))
    counts = tasks.run_group(ids, runtime())
    assert counts["handed_back"] == len(ids) - 2
    assert handed == ids[2:]
    assert stack.stats()["calls"] == 2  # nothing was sent for the handed-back jobs
    rest = stack.jobs(batch)[2:]
    assert all(j.status not in TERMINAL_STATUSES and j.status is not JobStatus.RUNNING for j in rest)
    assert all(j.attempt_count == 0 for j in rest)


def test_stopping_follows_celerys_shutdown_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not tasks._stopping()
    monkeypatch.setattr(worker_state, "should_stop", 0)  # warm shutdown sets EX_OK, which is 0
    assert tasks._stopping()


def _claim_all(ids: list[int]) -> dict[int, Any]:
    with connection_scope() as conn:
        return claims.claim_many(conn, ids, runtime().worker_id, runtime().settings.lease_s)


def test_a_group_is_claimed_at_once_and_each_job_only_once(stack: Stack) -> None:
    batch = stack.submit()
    ids = [j.id for j in stack.jobs(batch)]
    held = _claim_all(ids)
    assert sorted(held) == ids
    assert all(c.attempt == 1 and c.seq == 1 for c in held.values())
    assert {j.status for j in stack.jobs(batch)} == {JobStatus.RUNNING}
    assert _claim_all(ids) == {}  # held under a live lease: nobody claims them again
    for job_id in ids:
        assert process_job(job_id, runtime(), claim=held[job_id]).status is JobStatus.PASSED
    assert stack.stats()["billable"] == len(ids) and stack.stats()["duplicate_billable"] == 0


def test_a_claimed_job_taken_over_meanwhile_is_not_called(stack: Stack) -> None:
    """Its lease ran out while the group's earlier jobs ran and another worker claimed it."""
    batch = stack.submit()
    ids = [j.id for j in stack.jobs(batch)]
    held = _claim_all(ids)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == ids[0]).values(lease_owner="other:1"))
    assert process_job(ids[0], runtime(), claim=held[ids[0]]).status is None
    assert stack.stats()["calls"] == 0
    assert stack.jobs(batch)[0].lease_owner == "other:1"


def test_the_call_renews_a_lease_that_ran_out_while_the_job_waited(stack: Stack) -> None:
    batch = stack.submit()
    ids = [j.id for j in stack.jobs(batch)]
    held = _claim_all(ids)
    past = utcnow() - dt.timedelta(seconds=5)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == ids[0]).values(lease_until=past))
    with connection_scope() as conn:
        assert jobs.hold_content_key(conn, held[ids[0]], runtime().worker_id, "k", 300)
    lease_until = stack.jobs(batch)[0].lease_until
    assert lease_until is not None and lease_until > utcnow() + dt.timedelta(seconds=250)
    with connection_scope() as conn:  # not claimable now: no second worker can start it
        assert claims.claim_many(conn, ids[:1], "other:1", 300) == {}


def test_on_shutdown_claimed_jobs_go_back_queued_with_their_attempt(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = stack.submit()
    ids = [j.id for j in stack.jobs(batch)]
    handed: list[int] = []
    monkeypatch.setattr(tasks, "publish_jobs", lambda rest, app=None: handed.extend(rest))
    monkeypatch.setattr(tasks, "_stopping", lambda: True)  # SIGTERM right after the group claim
    assert tasks.run_group(ids, runtime()) == {"handed_back": len(ids)}
    assert handed == ids
    rest = stack.jobs(batch)
    assert {j.status for j in rest} == {JobStatus.QUEUED}
    assert all(j.attempt_count == 0 and j.lease_owner is None for j in rest)
    assert stack.stats()["calls"] == 0
    monkeypatch.setattr(tasks, "_stopping", lambda: False)
    assert sum(tasks.run_group(ids, runtime()).values()) == len(ids)  # the republished group runs
    assert set(stack.statuses(batch)) <= TERMINAL_STATUSES
    assert all(j.attempt_count == 1 for j in stack.jobs(batch))
