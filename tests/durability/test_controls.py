"""pause / resume / cancel / retry-failed, with the worker functions running around them."""

from __future__ import annotations

import pytest

from db.jobs import claim
from db.reports import build_report
from db.session import session_scope
from idbatch.domain import BatchState, JobStatus
from tests.durability.conftest import Stack
from workers import controls
from workers.runtime import runtime
from workers.verify import process_job

pytestmark = pytest.mark.integration


def test_pause_stops_new_calls_and_resume_republishes(stack: Stack) -> None:
    batch = stack.submit()
    ids = [j.id for j in stack.jobs(batch)]
    controls.pause(batch)

    outcomes = [process_job(job_id, runtime()) for job_id in ids]  # messages delivered while paused

    assert all(o.status is None for o in outcomes)
    assert set(stack.statuses(batch)) == {JobStatus.QUEUED}
    assert stack.stats()["calls"] == 0
    published: list[int] = []
    result = controls.resume(batch, stack.settings, published.extend)
    assert result.state == BatchState.ACTIVE.value
    assert sorted(published) == ids
    stack.run_open(batch)
    assert stack.stats()["billable"] == len(ids)


def test_cancel_closes_open_jobs_and_lets_a_running_call_finish(stack: Stack) -> None:
    batch = stack.submit()
    first, *rest = [j.id for j in stack.jobs(batch)]
    rt = runtime()
    with session_scope() as session:
        assert claim(session, first, rt.worker_id, 300) is not None  # in flight on a worker

    controls.cancel(batch)

    statuses = {j.id: j.status for j in stack.jobs(batch)}
    assert statuses[first] == JobStatus.RUNNING
    assert {statuses[i] for i in rest} == {JobStatus.CANCELLED}
    assert all(process_job(i, rt).status is None for i in rest)
    with pytest.raises(controls.BatchControlError):
        controls.resume(batch, stack.settings, lambda ids: None)


def test_retry_failed_reopens_failed_jobs_only(stack: Stack, env: object) -> None:
    stack.settings = env(max_attempts="1")  # type: ignore[operator]
    batch = stack.submit()
    ids = [j.id for j in stack.jobs(batch)]
    process_job(ids[0], runtime())  # answered: passed or negative, kept as is
    stack.faults(rate_5xx=1.0)
    for job_id in ids[1:]:
        assert process_job(job_id, runtime()).status == JobStatus.FAILED
    answered = stack.jobs(batch)[0].status
    stack.faults(rate_5xx=0.0)
    published: list[int] = []

    result = controls.retry_failed(batch, published.extend)

    assert result.jobs == len(ids) - 1
    assert sorted(published) == ids[1:]
    stack.run_open(batch)
    jobs = stack.jobs(batch)
    assert jobs[0].status == answered
    assert all(j.status in (JobStatus.PASSED, JobStatus.NEGATIVE) for j in jobs)
    with session_scope() as session:
        assert build_report(session, batch).done
    assert stack.stats()["billable"] == len(ids)
