"""The sweeper re-publishes from Postgres alone: due retries, lost messages, dead workers."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import update

from db.models import Job, utcnow
from db.session import session_scope
from idbatch.domain import JobStatus
from tests.durability.conftest import Stack
from workers.runtime import runtime
from workers.sweeper import sweep
from workers.verify import process_job

pytestmark = pytest.mark.integration

LONG_AGO = dt.timedelta(hours=2)


def _set(job_ids: list[int], **values: object) -> None:
    with session_scope() as session:
        session.execute(update(Job).where(Job.id.in_(job_ids)).values(**values))


def test_due_retry_is_published_and_a_future_one_is_not(stack: Stack) -> None:
    a, b = (j.id for j in stack.jobs(stack.submit())[:2])
    now = utcnow()
    _set([a], status=JobStatus.RETRY_WAIT, next_attempt_at=now - dt.timedelta(seconds=1), enqueued_at=now)
    _set([b], status=JobStatus.RETRY_WAIT, next_attempt_at=now + dt.timedelta(hours=1), enqueued_at=now)
    published: list[int] = []

    result = sweep(stack.settings, published.extend, queue_depth=lambda: 3)

    assert published == [a]
    assert result.due_retries == 1
    assert {j.id: j.status for j in stack.jobs(_batch(a))}[a] == JobStatus.QUEUED


def _batch(job_id: int) -> int:
    with session_scope() as session:
        return session.get_one(Job, job_id).batch_id


def test_lost_messages_are_republished_once_the_queue_is_empty(stack: Stack) -> None:
    batch = stack.submit()
    ids = [j.id for j in stack.jobs(batch)]
    _set(ids, enqueued_at=utcnow() - dt.timedelta(minutes=10))
    published: list[int] = []

    sweep(stack.settings, published.extend, queue_depth=lambda: 50)  # a backlog: messages may wait
    assert published == []
    sweep(stack.settings, published.extend, queue_depth=lambda: 0)  # nothing waits: they are lost
    assert sorted(published) == ids
    sweep(stack.settings, published.extend, queue_depth=lambda: 0)  # stamped: not again at once
    assert sorted(published) == ids

    stack.run_open(batch)  # the re-published messages complete every job
    assert stack.stats()["billable"] == len(ids)


def test_expired_lease_of_a_dead_worker_is_reclaimed(stack: Stack) -> None:
    batch = stack.submit()
    job_id = stack.jobs(batch)[0].id
    past = utcnow() - LONG_AGO
    _set(
        [job_id],
        status=JobStatus.RUNNING,
        lease_owner="dead-host:1",
        lease_until=past,
        attempt_count=1,
        enqueued_at=past - dt.timedelta(seconds=1),
    )
    published: list[int] = []

    result = sweep(stack.settings, published.extend, queue_depth=lambda: 5)
    assert published == [job_id]
    assert result.expired_leases == 1
    sweep(stack.settings, published.extend, queue_depth=lambda: 5)
    assert published == [job_id]  # once per expiry

    outcome = process_job(job_id, runtime())
    assert outcome.status in (JobStatus.PASSED, JobStatus.NEGATIVE)
    job = stack.jobs(batch)[0]
    assert job.attempt_count == 2
    assert job.lease_owner is None


def test_live_lease_is_left_alone(stack: Stack) -> None:
    job_id = stack.jobs(stack.submit())[0].id
    _set([job_id], status=JobStatus.RUNNING, lease_owner="busy:1", lease_until=utcnow() + LONG_AGO)
    published: list[int] = []
    sweep(stack.settings, published.extend, queue_depth=lambda: 0)
    assert job_id not in published


def test_two_sweepers_never_publish_a_job_twice(stack: Stack) -> None:
    batches = [stack.submit() for _ in range(5)]
    ids = [j.id for b in batches for j in stack.jobs(b)]
    _set(ids, status=JobStatus.RETRY_WAIT, next_attempt_at=utcnow() - dt.timedelta(seconds=1))
    published: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def publish(batch_ids: list[int]) -> None:
        with lock:
            published.extend(batch_ids)

    def run() -> None:
        barrier.wait()
        sweep(stack.settings, publish, queue_depth=lambda: 1)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(published) == sorted(ids)
