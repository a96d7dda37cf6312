"""One message for a group of jobs (issue 17): each job still claimed, called and recorded alone."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from celery.worker import state as worker_state

import workers.tasks as tasks
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

    def crash_first(job_id: int, rt: Any) -> Any:
        if job_id == ids[0]:
            raise RuntimeError("a bug")
        return process_job(job_id, rt)

    monkeypatch.setattr(tasks, "process_job", crash_first)
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
