"""Task states tell the truth to Celery events and Flower: a failed job is a FAILURE, a job
waiting to retry is a RETRY, an answered job a SUCCESS. Postgres keeps the job's state."""

from __future__ import annotations

import pytest

from idbatch.domain import JobStatus
from tests.conftest import Env
from tests.durability.conftest import Stack
from workers.tasks import JobFailed, verify

pytestmark = pytest.mark.integration


def test_an_answered_job_is_a_success(stack: Stack) -> None:
    batch = stack.submit()
    result = verify.apply(args=[stack.jobs(batch)[0].id])
    assert result.state == "SUCCESS" and result.result == "passed"


def test_a_failed_job_is_a_task_failure_not_a_success(stack: Stack, env: Env) -> None:
    stack.faults(rate_5xx=1.0)
    env(max_attempts="1")
    batch = stack.submit()
    result = verify.apply(args=[stack.jobs(batch)[0].id])
    assert result.state == "FAILURE" and isinstance(result.result, JobFailed)
    assert stack.jobs(batch)[0].status == JobStatus.FAILED
    # an expected error: Celery logs one INFO line without a traceback, and (acks_late,
    # acks_on_failure_or_timeout) acknowledges the message: no redelivery, no retry
    assert JobFailed in verify.throws
    assert verify.acks_late and verify.acks_on_failure_or_timeout
    assert not getattr(verify, "autoretry_for", ())


def test_a_job_waiting_to_retry_is_a_retry(stack: Stack, env: Env) -> None:
    stack.faults(rate_5xx=1.0)
    env(max_attempts="3")
    batch = stack.submit()
    result = verify.apply(args=[stack.jobs(batch)[0].id])
    assert result.state == "RETRY"
    assert stack.jobs(batch)[0].status == JobStatus.RETRY_WAIT  # the sweeper republishes it when due
