"""Every Celery message idbatch sends goes out here, and only after its rows are committed.

A worker that receives a job id must be able to read that job, so a message is never
sent inside the transaction that creates or re-opens the job: callers hand the ids to
``after_commit(session, ...)`` while the transaction is open, and they are published
when (and only if) it commits (warehouse's after-commit hook). If publishing fails after
the commit, nothing is lost: the job row says ``queued`` and the sweeper re-publishes it.

Messages name tasks by string (``dispatch.app``), so producers and workers both publish
through this module without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from celery import Celery
from kombu.exceptions import ChannelError
from sqlalchemy.orm import Session

from db.session import after_commit as db_after_commit
from dispatch.app import FAN_OUT, VERIFY, VERIFY_MANY, WEBHOOK_DELIVER, celery_app
from idbatch.logging import get_logger
from idbatch.settings import Settings, get_settings

log = get_logger(__name__)

Publisher = Callable[[list[int]], None]


def group_size(n: int, settings: Settings | None = None) -> int:
    """Jobs per message for a list of ``n``: at most ``verify_group``, and 1 for short lists.

    A group runs on one worker thread, one job after another, so a list is grouped only
    when it still leaves a group for every thread of a worker (``n >= group x
    worker_concurrency``): a handful of jobs keeps running in parallel. With Celery task
    events on (Flower) every job is its own task, so its task state is its own.
    """
    s = settings or get_settings()
    if s.celery_events:
        return 1
    return max(1, min(s.verify_group, n // s.worker_concurrency))


def publish_jobs(job_ids: Iterable[int], app: Celery | None = None) -> None:
    """The jobs' messages over one broker connection: ``verify`` per job, or ``verify_many`` per group.

    Grouping (``group_size``) changes only how many messages carry the ids: each job is
    still claimed, called and recorded on its own (workers.tasks.verify_many).
    """
    ids = list(job_ids)
    if not ids:
        return
    app = app or celery_app()
    k = group_size(len(ids))
    with app.producer_or_acquire() as producer:
        if k == 1:
            for job_id in ids:
                app.send_task(VERIFY, (job_id,), producer=producer)
            return
        for i in range(0, len(ids), k):
            app.send_task(VERIFY_MANY, (ids[i : i + k],), producer=producer)


def publish_fanout(job_ids: list[int], app: Celery | None = None) -> None:
    """One message for a committed chunk; a worker's ``fan_out`` task expands it.

    Ingest of a million rows then costs the producer 200 publishes, not a million.
    """
    if job_ids:
        (app or celery_app()).send_task(FAN_OUT, (job_ids,))


def publish_webhooks(outbox_ids: Iterable[int], app: Celery | None = None) -> None:
    """One ``idbatch.webhooks.deliver`` message per committed outbox row (issue 14)."""
    ids = list(outbox_ids)
    if not ids:
        return
    app = app or celery_app()
    with app.producer_or_acquire() as producer:
        for outbox_id in ids:
            app.send_task(WEBHOOK_DELIVER, (outbox_id,), producer=producer)


def on(app: Celery) -> Publisher:
    """A publisher bound to ``app`` (the in-memory broker of one embedded process, say)."""
    return lambda ids: publish_jobs(ids, app)


def discard(job_ids: list[int]) -> None:
    """For a process with no broker to talk to: the sweeper publishes later."""


def after_commit(session: Session, publish: Publisher, job_ids: list[int]) -> None:
    """Publish ``job_ids`` with ``publish`` once ``session``'s transaction commits.

    Nothing is sent if it rolls back; several calls in one transaction publish in order.
    """
    if job_ids:
        db_after_commit(session, lambda: publish(job_ids))


def broker_queue_depth(app: Celery, queue: str) -> int | None:
    """Messages waiting in ``queue`` (not counting unacked ones), or None if unknown."""
    try:
        with app.connection_for_read() as conn:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
    except ChannelError as exc:
        # Redis deletes an empty list, so "no such queue" means "empty".
        return 0 if "NOT_FOUND" in str(exc) else None
    except Exception as exc:  # noqa: BLE001 - a broker outage must not stop the DB-side sweep
        log.warning("cannot read broker queue depth", error=str(exc))
        return None


def default_publisher(mode: str) -> Publisher:
    """Ingest's publisher: ``fanout`` (one message per chunk) or ``each`` (per job)."""
    return publish_fanout if mode == "fanout" else publish_jobs
