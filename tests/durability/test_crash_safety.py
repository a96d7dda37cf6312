"""A job is never stranded in ``running`` by an error after its claim."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from db.models import Job
from db.session import session_scope
from idbatch.domain import JobStatus
from tests.durability.conftest import Stack
from workers import verify
from workers.runtime import runtime
from workers.verify import process_job

pytestmark = pytest.mark.integration


def test_error_after_claim_puts_the_job_back_and_counts_the_attempt(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = stack.submit()
    job_id = stack.jobs(batch)[0].id

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("database said: too many clients already")

    monkeypatch.setattr(verify.prepare, "prepare_call", broken)
    with pytest.raises(RuntimeError):
        process_job(job_id, runtime())
    with session_scope() as session:
        job = session.get_one(Job, job_id)
        assert job.status == JobStatus.RETRY_WAIT
        assert job.attempt_count == 1  # a crash is an attempt: a job that always crashes must end
        assert job.lease_owner is None
        assert job.error_class == "crashed"

    monkeypatch.undo()
    stack.run_open(batch)
    assert set(stack.statuses(batch)) <= {JobStatus.PASSED, JobStatus.NEGATIVE, JobStatus.REJECTED}
    assert stack.stats()["billable"] > 0


def test_a_job_that_always_crashes_fails_after_max_attempts(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = stack.submit()
    job_id = stack.jobs(batch)[0].id

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("cannot decode this image")

    monkeypatch.setattr(verify.prepare, "prepare_call", broken)
    rt = runtime()
    for _ in range(rt.settings.max_attempts):
        with session_scope() as session:
            session.execute(update(Job).where(Job.id == job_id).values(next_attempt_at=None))
        with pytest.raises(RuntimeError):
            process_job(job_id, rt)
    with session_scope() as session:
        job = session.get_one(Job, job_id)
        assert (job.status, job.error_class, job.attempt_count) == (
            JobStatus.FAILED,
            "crashed",
            rt.settings.max_attempts,
        )
        assert job.finished_at is not None
