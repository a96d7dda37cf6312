"""A job is never stranded in ``running`` by an error after its claim."""

from __future__ import annotations

import pytest

from db.models import Job
from db.session import session_scope
from idbatch.domain import JobStatus
from tests.durability.conftest import Stack
from workers import verify
from workers.runtime import runtime
from workers.verify import process_job

pytestmark = pytest.mark.integration


def test_error_after_claim_puts_the_job_back_with_its_attempt_unspent(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = stack.submit()
    job_id = stack.jobs(batch)[0].id

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("database said: too many clients already")

    monkeypatch.setattr(verify.record, "prepare_call", broken)
    with pytest.raises(RuntimeError):
        process_job(job_id, runtime())
    with session_scope() as session:
        job = session.get_one(Job, job_id)
        assert job.status == JobStatus.RETRY_WAIT
        assert job.attempt_count == 0
        assert job.lease_owner is None
        assert job.error_class == "crashed"

    monkeypatch.undo()
    stack.run_open(batch)
    assert set(stack.statuses(batch)) <= {JobStatus.PASSED, JobStatus.NEGATIVE, JobStatus.REJECTED}
    assert stack.stats()["billable"] > 0
