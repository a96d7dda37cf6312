"""Celery tasks: thin wrappers over plain functions that tests call directly.

Task names are ``dispatch.app``'s constants: producers publish by name, never by
importing these objects.
"""

from __future__ import annotations

import structlog
from celery import current_app, shared_task

from dispatch.app import FAN_OUT, FIRE_SCHEDULES, SWEEP, VERIFY
from dispatch.publish import publish_jobs
from workers.runtime import runtime
from workers.schedules import fire_due
from workers.sweeper import sweep_with_app
from workers.verify import process_job


@shared_task(name=VERIFY, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def verify(job_id: int) -> str | None:
    """Verify one job.

    A retry is *not* a new message: the job is left ``retry_wait`` with its
    ``next_attempt_at`` in Postgres and the sweeper publishes it when due. A countdown
    message would live only in Redis (lost on restart) and be re-delivered by Celery
    after the visibility timeout even when it was not lost.
    """
    with structlog.contextvars.bound_contextvars(job_id=job_id):
        outcome = process_job(job_id, runtime())
        return outcome.status.value if outcome.status else None


@shared_task(name=SWEEP, acks_late=False, ignore_result=True)
def sweep() -> int:
    """Beat task: re-publish due retries, lost messages and dead workers' jobs."""
    return sweep_with_app(runtime().settings, current_app).published


@shared_task(name=FAN_OUT, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def fan_out(job_ids: list[int]) -> int:
    """Expand one ingest message (a committed chunk of job ids) into one verify message each.

    Ingest publishes one message per chunk instead of one per row, so a million-row
    manifest costs the producer 200 publishes. A redelivered fan-out publishes its ids
    again, which ``claim()`` makes harmless.
    """
    publish_jobs(job_ids, current_app)
    return len(job_ids)


@shared_task(name=FIRE_SCHEDULES, acks_late=False, ignore_result=True)
def fire_schedules() -> int:
    """Beat task (issue 15): fire due rerun schedule slots; one row per slot makes it once."""
    return len(fire_due(runtime().settings))
