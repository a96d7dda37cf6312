"""The sweeper's queries: which jobs need a (new) message, and stamping them atomically.

On Postgres the candidates are locked with ``FOR UPDATE SKIP LOCKED`` and stamped
(``enqueued_at``) in the same transaction, so two sweepers never take the same job in
one pass; SQLite transactions start with ``BEGIN IMMEDIATE`` (db.session), so sweepers
there are simply serialized.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from db.models import Attempt, Batch, Job, utcnow
from db.session import session_scope
from idbatch.domain import TERMINAL_STATUSES, AttemptOutcome, BatchKind, BatchState, ErrorClass, JobStatus

PAGE = 1000

Values = Callable[[], dict[str, Any]]
Selection = tuple[ColumnElement[bool], Values]  # which jobs, and what to stamp them with
Clock = Callable[[], dt.datetime]
OnPage = Callable[[Session, list[int]], None]


def _active(batch_id: int | None) -> ColumnElement[bool]:
    active = select(Batch.id).where(Batch.state == BatchState.ACTIVE)
    if batch_id is not None:
        active = active.where(Batch.id == batch_id)
    return Job.batch_id.in_(active.scalar_subquery())


def due_retries(t: dt.datetime, batch_id: int | None, now: Clock = utcnow) -> Selection:
    """``retry_wait`` jobs whose ``next_attempt_at`` has passed: back to ``queued``."""
    where = and_(_active(batch_id), Job.status == JobStatus.RETRY_WAIT, Job.next_attempt_at <= t)
    return where, lambda: {"status": JobStatus.QUEUED, "next_attempt_at": None, "enqueued_at": now()}


def expired_leases(
    t: dt.datetime, requeue_cutoff: dt.datetime, batch_id: int | None, now: Clock = utcnow
) -> Selection:
    """``running`` jobs whose worker died: once per expiry, again if that message is lost too."""
    where = and_(
        _active(batch_id),
        Job.status == JobStatus.RUNNING,
        Job.lease_until < t,
        # claim() renews lease_until, so this holds once per expiry
        or_(Job.enqueued_at.is_(None), Job.enqueued_at < Job.lease_until, Job.enqueued_at < requeue_cutoff),
    )
    return where, lambda: {"enqueued_at": now()}


def lost_messages(cutoff: dt.datetime, batch_id: int | None, now: Clock = utcnow) -> Selection:
    """``queued``/``pending`` jobs whose last message is older than ``cutoff``."""
    waiting_since = func.coalesce(Job.enqueued_at, Job.updated_at)
    where = and_(
        _active(batch_id),
        Job.status.in_((JobStatus.QUEUED, JobStatus.PENDING)),
        waiting_since <= cutoff,
        # held by a rerun's budget (issue 15): pending on purpose, published only on release
        or_(Job.error_class.is_(None), Job.error_class != ErrorClass.BUDGET),
    )
    return where, lambda: {"status": JobStatus.QUEUED, "enqueued_at": now()}


def take_page(where: ColumnElement[bool], values: dict[str, Any], on_page: OnPage, limit: int = PAGE) -> int:
    """Lock up to ``limit`` matching jobs, stamp them, and hand their ids to ``on_page``."""
    with session_scope() as session:
        stmt = select(Job.id).where(where).order_by(Job.id).limit(limit).with_for_update(skip_locked=True)
        ids = list(session.scalars(stmt).all())
        if ids:
            session.execute(update(Job).where(Job.id.in_(ids)).values(**values))
        on_page(session, ids)
    return len(ids)


def close_dead_cancelled(t: dt.datetime) -> int:
    """A cancelled batch's job whose worker died will never finish: close it.

    Its calls still ``in_flight`` may have been billed: they become ``in_doubt``.
    """
    with session_scope() as session:
        cancelled = select(Batch.id).where(Batch.state == BatchState.CANCELLED).scalar_subquery()
        dead = select(Job.id).where(
            Job.batch_id.in_(cancelled), Job.status == JobStatus.RUNNING, Job.lease_until < t
        )
        session.execute(
            update(Attempt)
            .where(Attempt.job_id.in_(dead.scalar_subquery()), Attempt.outcome == AttemptOutcome.IN_FLIGHT)
            .values(outcome=AttemptOutcome.IN_DOUBT, error="the worker stopped during the call")
        )
        res = session.execute(
            update(Job)
            .where(Job.batch_id.in_(cancelled), Job.status == JobStatus.RUNNING, Job.lease_until < t)
            .values(status=JobStatus.CANCELLED, lease_owner=None, lease_until=None, finished_at=t)
        )
        return int(res.rowcount)  # type: ignore[attr-defined]


def finish_batches(t: dt.datetime, batch_id: int | None = None) -> int:
    """Stamp ``finished_at`` on batches whose every row is a job in a terminal state.

    Run by the sweeper (and at the end of an ingest), so the hot path of a job never
    pays for "was I the last one?". A standing events batch never finishes.
    """
    open_jobs = (
        select(Job.id).where(Job.batch_id == Batch.id, Job.status.not_in(list(TERMINAL_STATUSES))).exists()
    )
    stmt = update(Batch).where(
        Batch.finished_at.is_(None),
        Batch.ingest_complete.is_(True),
        Batch.kind != BatchKind.EVENTS,
        ~open_jobs,
    )
    if batch_id is not None:
        stmt = stmt.where(Batch.id == batch_id)
    with session_scope() as session:
        return int(session.execute(stmt.values(finished_at=t)).rowcount)  # type: ignore[attr-defined]
