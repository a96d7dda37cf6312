"""The sweeper: re-publish jobs from Postgres alone, so the broker is never the truth.

Redis here keeps nothing on disk, so a restart loses every queued message; a worker
killed with SIGKILL leaves its job ``running`` under a lease nobody renews. The sweeper
finds such jobs in the job table and publishes a fresh message for each. It is also the
retry dispatcher: a failed attempt leaves the job ``retry_wait`` with ``next_attempt_at``
in Postgres (no Celery countdown message, which Redis would lose on restart and which
Celery re-delivers after the visibility timeout), and the sweeper publishes it when due.

What it re-publishes, per active batch:

- ``retry_wait`` jobs whose ``next_attempt_at`` has passed: moved to ``queued``.
- ``running`` jobs whose lease expired (the worker died), once per expiry.
- ``queued``/``pending`` jobs whose last message is older than ``requeue_after_s``,
  but only when the broker queue is empty — otherwise their message is most likely
  still waiting behind a long backlog, and re-publishing would double the queue. A job
  older than ``HARD_REQUEUE_S`` (the broker's visibility timeout) is re-published anyway.

A duplicate message is always harmless: ``claim()`` lets only one worker hold a job.
Two sweepers never publish the same job twice in one pass: on Postgres the candidates
are locked with ``FOR UPDATE SKIP LOCKED`` and stamped (``enqueued_at``) in the same
transaction; SQLite transactions start with ``BEGIN IMMEDIATE`` (see db.session), so
sweepers there are simply serialized. Messages are published after the commit; if
publishing fails the stamp ages and the next sweep publishes again.

Runs as the Celery beat task ``idbatch.sweep``, from ``idbatch resume``, and as a
background thread in the embedded mode.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update

from db.models import Batch, Job, utcnow
from db.session import session_scope
from idbatch.domain import BatchState, JobStatus
from idbatch.logging import get_logger
from idbatch.settings import Settings

log = get_logger(__name__)

HARD_REQUEUE_S = 3600.0  # = the broker's visibility timeout (workers.app_factory)
PAGE = 1000

Publish = Callable[[list[int]], None]


@dataclass
class SweepResult:
    due_retries: int = 0
    expired_leases: int = 0
    lost_messages: int = 0
    cancelled: int = 0

    @property
    def published(self) -> int:
        return self.due_retries + self.expired_leases + self.lost_messages


def publish_jobs(job_ids: Iterable[int], app: Any = None) -> None:
    """One message per job (on ``app``, default the current one), over one connection."""
    from workers.tasks import verify

    ids = list(job_ids)
    if not ids:
        return
    with (app or verify.app).producer_or_acquire() as producer:
        for job_id in ids:
            verify.apply_async((job_id,), producer=producer)


def broker_queue_depth(app: Any, queue: str) -> int | None:
    """Messages waiting in ``queue`` (not counting unacked ones), or None if unknown."""
    from kombu.exceptions import ChannelError

    try:
        with app.connection_for_read() as conn:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
    except ChannelError as exc:
        # Redis deletes an empty list, so "no such queue" means "empty".
        return 0 if "NOT_FOUND" in str(exc) else None
    except Exception as exc:  # noqa: BLE001 - a broker outage must not stop the DB-side sweep
        log.warning("cannot read broker queue depth", error=str(exc))
        return None


def _candidates(session: Any, where: ColumnElement[bool], limit: int) -> list[int]:
    stmt = select(Job.id).where(where).order_by(Job.id).limit(limit).with_for_update(skip_locked=True)
    return list(session.scalars(stmt).all())


def _active(batch_id: int | None) -> ColumnElement[bool]:
    active = select(Batch.id).where(Batch.state == BatchState.ACTIVE)
    if batch_id is not None:
        active = active.where(Batch.id == batch_id)
    return Job.batch_id.in_(active.scalar_subquery())


def _page(where: ColumnElement[bool], values: dict[str, Any], publish: Publish, limit: int) -> int:
    with session_scope() as session:
        ids = _candidates(session, where, limit)
        if ids:
            session.execute(update(Job).where(Job.id.in_(ids)).values(**values))
    publish(ids)
    return len(ids)


def _drain(where: ColumnElement[bool], values: Callable[[], dict[str, Any]], publish: Publish) -> int:
    total = 0
    while True:
        n = _page(where, values(), publish, PAGE)
        total += n
        if n < PAGE:
            return total


def sweep(
    settings: Settings,
    publish: Publish = publish_jobs,
    *,
    queue_depth: Callable[[], int | None] | None = None,
    batch_id: int | None = None,
    force: bool = False,
    now: Callable[[], dt.datetime] = utcnow,
) -> SweepResult:
    """One pass. ``force`` re-publishes every queued job of ``batch_id`` (``resume``)."""
    result = SweepResult()
    t = now()
    active = _active(batch_id)

    result.due_retries = _drain(
        and_(active, Job.status == JobStatus.RETRY_WAIT, Job.next_attempt_at <= t),
        lambda: {"status": JobStatus.QUEUED, "next_attempt_at": None, "enqueued_at": now()},
        publish,
    )

    requeue_cutoff = t - dt.timedelta(seconds=settings.requeue_after_s)
    result.expired_leases = _drain(
        and_(
            active,
            Job.status == JobStatus.RUNNING,
            Job.lease_until < t,
            # once per expiry (claim() renews lease_until), again if that message is lost too
            or_(
                Job.enqueued_at.is_(None), Job.enqueued_at < Job.lease_until, Job.enqueued_at < requeue_cutoff
            ),
        ),
        lambda: {"enqueued_at": now()},
        publish,
    )

    if force:
        cutoff = t
    else:
        depth = queue_depth() if queue_depth is not None else None
        cutoff = requeue_cutoff if depth == 0 else t - dt.timedelta(seconds=HARD_REQUEUE_S)
    waiting_since = func.coalesce(Job.enqueued_at, Job.updated_at)
    result.lost_messages = _drain(
        and_(active, Job.status.in_((JobStatus.QUEUED, JobStatus.PENDING)), waiting_since <= cutoff),
        lambda: {"status": JobStatus.QUEUED, "enqueued_at": now()},
        publish,
    )

    # A cancelled batch's job whose worker died will never finish: close it.
    with session_scope() as session:
        cancelled = select(Batch.id).where(Batch.state == BatchState.CANCELLED).scalar_subquery()
        res = session.execute(
            update(Job)
            .where(Job.batch_id.in_(cancelled), Job.status == JobStatus.RUNNING, Job.lease_until < t)
            .values(status=JobStatus.CANCELLED, lease_owner=None, lease_until=None, finished_at=t)
        )
        result.cancelled = int(res.rowcount)  # type: ignore[attr-defined]
    if result.published or result.cancelled:
        log.info(
            "sweep",
            due_retries=result.due_retries,
            expired_leases=result.expired_leases,
            lost_messages=result.lost_messages,
            cancelled=result.cancelled,
        )
    return result


def sweep_with_app(settings: Settings, app: Any, **kwargs: Any) -> SweepResult:
    """A sweep that publishes on ``app`` and probes its broker for the queue depth."""
    return sweep(
        settings,
        lambda ids: publish_jobs(ids, app),
        queue_depth=lambda: broker_queue_depth(app, settings.queue),
        **kwargs,
    )


@contextmanager
def sweeper_thread(settings: Settings, app: Any) -> Iterator[threading.Thread]:
    """Embedded mode: sweep every ``sweep_interval_s`` in a daemon thread of this process."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(settings.sweep_interval_s):
            try:
                sweep_with_app(settings, app)
            except Exception as exc:  # noqa: BLE001 - keep sweeping; the next pass retries
                log.warning("sweep failed", error=str(exc))

    thread = threading.Thread(target=loop, name="idbatch-sweeper", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(10)
