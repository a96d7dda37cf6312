"""Celery tasks: thin wrappers over plain functions that tests call directly.

Task names are ``dispatch.app``'s constants: producers publish by name, never by
importing these objects.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import structlog
from celery import current_app, shared_task
from celery.exceptions import Retry
from celery.signals import worker_init
from celery.worker import state as worker_state

from db import claims
from db.jobs import Claim
from db.session import connection_scope
from dispatch.app import (
    FAN_OUT,
    FIRE_SCHEDULES,
    SWEEP,
    VERIFY,
    VERIFY_MANY,
    WEBHOOK_DELIVER,
    WEBHOOK_SWEEP,
)
from dispatch.publish import publish_jobs
from idbatch.domain import JobStatus
from idbatch.logging import get_logger
from workers import webhooks
from workers.durable import durably
from workers.runtime import Runtime, runtime
from workers.schedules import fire_due
from workers.sweeper import sweep_with_app
from workers.verify import CLAIM_DB_TRIES, process_job

log = get_logger(__name__)

_task_events = False  # this worker sends task events (-E): see verify_many


@worker_init.connect(weak=False)
def _note_task_events(sender: Any = None, **_: Any) -> None:
    global _task_events
    _task_events = bool(getattr(sender, "task_events", False))


class JobFailed(Exception):
    """The job ended ``failed`` (no answer after every attempt), told as a task failure.

    Listed in the task's ``throws``: Celery records FAILURE (``task-failed`` for Flower
    and ``celery events``) and logs one INFO line without a traceback, as for an expected
    error. The message is acknowledged like any finished task (``acks_on_failure_or_timeout``
    is Celery's default), and nothing retries it: Postgres already holds the final state.
    """


@shared_task(name=VERIFY, acks_late=True, reject_on_worker_lost=True, ignore_result=True, throws=(JobFailed,))
def verify(job_id: int) -> str | None:
    """Verify one job; the task state tells the truth about the job.

    - ``failed``: raises ``JobFailed`` (task FAILURE, no traceback, no redelivery).
    - ``retry_wait``: raises ``Retry`` without publishing anything (task RETRY,
      ``task-retried``); the message is acknowledged as for any retry.
    - any other outcome (passed, negative, rejected, nothing to do): SUCCESS with the
      status as the result.

    A retry is *not* a new message: the job is left ``retry_wait`` with its
    ``next_attempt_at`` in Postgres and the sweeper publishes it when due. A countdown
    message would live only in Redis (lost on restart) and be re-delivered by Celery
    after the visibility timeout even when it was not lost. That is why ``Retry`` is
    raised here bare instead of calling ``self.retry()``, which would publish one.
    """
    with structlog.contextvars.bound_contextvars(job_id=job_id):
        outcome = process_job(job_id, runtime())
    if outcome.status is JobStatus.FAILED:
        raise JobFailed(f"job {job_id} failed: no answer after every attempt (see `idbatch report`)")
    if outcome.status is JobStatus.RETRY_WAIT:
        wait = outcome.retry_in_s or 0.0
        raise Retry(f"job {job_id} waits {wait:.1f}s in Postgres; the sweeper republishes it", when=wait)
    return outcome.status.value if outcome.status else None


@shared_task(name=VERIFY_MANY, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def verify_many(job_ids: list[int]) -> dict[str, int]:
    """Verify a group of jobs (``dispatch.publish.group_size``), one after another on this thread.

    Only the message is shared: each job is claimed under its own lease, called behind
    the limiter and recorded in its own transactions by ``process_job``, exactly as
    ``verify`` does, so every guarantee is per job. The message is acknowledged after
    the last job (``acks_late``): a worker killed mid-group leaves its running job to
    the lease and the rest ``queued`` in Postgres, which the sweeper re-publishes
    (redelivery of the whole message is harmless, the claims skip finished jobs).

    A worker sending task events (``-E``, Flower) re-publishes the group as one
    ``verify`` per job, so each job's task state (FAILURE, RETRY) is still its own.
    """
    if _task_events:
        publish_jobs_each(job_ids)
        return {"split": len(job_ids)}
    return run_group(job_ids, runtime())


def publish_jobs_each(job_ids: list[int]) -> None:
    with current_app.producer_or_acquire() as producer:
        for job_id in job_ids:
            current_app.send_task(VERIFY, (job_id,), producer=producer)


def _stopping() -> bool:
    """A warm or cold shutdown was asked (Celery sets these on SIGTERM / SIGQUIT)."""
    return any(
        flag is not None and flag is not False
        for flag in (worker_state.should_stop, worker_state.should_terminate)
    )


def run_group(job_ids: list[int], rt: Runtime) -> dict[str, int]:
    """``process_job`` for each id; counts by outcome. A job that crashed does not stop the rest.

    The group is claimed in one transaction (``db.claims``: why every guarantee holds),
    then run one job after another; if that claim fails, each job claims itself as
    before. On shutdown the jobs not started are handed back, ``queued`` with their
    attempt unspent, and republished before this message is acknowledged (warm shutdown
    finishes running tasks, and a group must not hold the worker for its whole length);
    if that publish fails they stay ``queued`` for the sweeper.
    """
    with rt.gate().holding_releases():
        return _run_group(job_ids, rt)


def _run_group(job_ids: list[int], rt: Runtime) -> dict[str, int]:
    counts: Counter[str] = Counter()
    claims = _claim_group(job_ids, rt)
    for i, job_id in enumerate(job_ids):
        if _stopping():
            _hand_back(job_ids[i:], claims, rt, counts)
            break
        claim = claims.pop(job_id, None) if claims is not None else None
        if claims is not None and claim is None:
            counts["skipped"] += 1  # terminal, paused, someone else's, or not yet due
            continue
        with structlog.contextvars.bound_contextvars(job_id=job_id):
            try:
                outcome = process_job(job_id, rt, claim=claim)
            except Exception:  # noqa: BLE001 - process_job logged it and put the job back
                counts["crashed"] += 1
                continue
        counts[outcome.status.value if outcome.status else "skipped"] += 1
    return dict(counts)


def _claim_group(job_ids: list[int], rt: Runtime) -> dict[int, Claim] | None:
    """The group's claims by job id (one transaction), or None: let each job claim itself."""
    if len(job_ids) < 2:
        return None

    def claim_tx() -> dict[int, Claim]:
        with connection_scope() as conn:
            return claims.claim_many(conn, job_ids, rt.worker_id, rt.settings.lease_s)

    try:
        return durably(claim_tx, "claim", tries=CLAIM_DB_TRIES)
    except Exception as exc:  # noqa: BLE001 - nothing was claimed: each job tries on its own
        log.warning("could not claim a group of jobs", jobs=len(job_ids), error=str(exc))
        return None


def _hand_back(rest: list[int], held: dict[int, Claim] | None, rt: Runtime, counts: Counter[str]) -> None:
    """Shutdown: give back the claimed jobs not started, then republish them (and the unclaimed)."""
    publish = list(rest)
    if held:
        try:
            with connection_scope() as conn:
                back = claims.hand_back(conn, list(held.values()), rt.worker_id)
        except Exception as exc:  # noqa: BLE001 - still ours: the lease expires, the sweeper republishes
            log.warning("could not hand back a group's claimed jobs", jobs=len(held), error=str(exc))
            back = set()
        # jobs still held (the hand-back failed) wait for their lease: a message now would be skipped
        publish = [j for j in rest if j not in held or j in back]
    try:
        publish_jobs(publish, current_app)
    except Exception as exc:  # noqa: BLE001 - the rows are queued: the sweeper publishes them
        log.warning("could not hand back a group's jobs at shutdown", jobs=len(publish), error=str(exc))
    counts["handed_back"] += len(rest)


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


@shared_task(name=WEBHOOK_DELIVER, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def webhook_deliver(outbox_id: int) -> str:
    """One delivery attempt of one webhook event (issue 14; workers.webhooks)."""
    return webhooks.deliver(outbox_id, runtime().settings)


@shared_task(name=WEBHOOK_SWEEP, acks_late=False, ignore_result=True)
def webhook_sweep() -> int:
    """Beat task: derive events of finished batches, publish due deliveries."""
    return webhooks.sweep_webhooks(runtime().settings, current_app)


@shared_task(name=FIRE_SCHEDULES, acks_late=False, ignore_result=True)
def fire_schedules() -> int:
    """Beat task (issue 15): fire due rerun schedule slots; one row per slot makes it once."""
    return len(fire_due(runtime().settings))
