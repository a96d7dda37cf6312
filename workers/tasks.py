"""Celery tasks: thin wrappers over plain functions that tests call directly."""

from __future__ import annotations

import structlog
from celery import shared_task

from workers.runtime import runtime
from workers.verify import process_job


@shared_task(name="idbatch.verify", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def verify(job_id: int) -> str | None:
    """Verify one job. A retry is a new message sent after the job's row is committed."""
    with structlog.contextvars.bound_contextvars(job_id=job_id):
        outcome = process_job(job_id, runtime())
        if outcome.retry_in_s is not None:
            verify.apply_async((job_id,), countdown=outcome.retry_in_s)
        return outcome.status.value if outcome.status else None
