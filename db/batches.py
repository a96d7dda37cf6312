"""Batch state and the bulk job updates of the batch controls (pause, cancel, retry-failed)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Batch, Job, utcnow
from idbatch.domain import BatchState, JobStatus

NOT_RUNNING_OPEN = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RETRY_WAIT)


class BatchControlError(ValueError):
    """The batch does not exist or is in a state that forbids the control."""


def set_state(session: Session, batch_id: int, state: BatchState, *, allowed: tuple[BatchState, ...]) -> None:
    """Move the batch to ``state`` if it is in one of ``allowed`` (or already there)."""
    current = session.scalar(select(Batch.state).where(Batch.id == batch_id).with_for_update())
    if current is None:
        raise BatchControlError(f"batch {batch_id} does not exist")
    if current not in allowed and current != state:
        raise BatchControlError(f"batch {batch_id} is {current.value}; cannot make it {state.value}")
    session.execute(update(Batch).where(Batch.id == batch_id).values(state=state))


def state_of(session: Session, batch_id: int) -> BatchState:
    state = session.scalar(select(Batch.state).where(Batch.id == batch_id))
    if state is None:
        raise BatchControlError(f"batch {batch_id} does not exist")
    return state


def cancel_jobs(session: Session, batch_id: int) -> int:
    """Close every open job that is not running, and running ones whose worker died."""
    now = utcnow()
    res = session.execute(
        update(Job)
        .where(Job.batch_id == batch_id, Job.status.in_(NOT_RUNNING_OPEN))
        .values(status=JobStatus.CANCELLED, finished_at=now, next_attempt_at=None, updated_at=now)
    )
    n = int(res.rowcount)  # type: ignore[attr-defined]
    res = session.execute(
        update(Job)
        .where(Job.batch_id == batch_id, Job.status == JobStatus.RUNNING, Job.lease_until < now)
        .values(status=JobStatus.CANCELLED, finished_at=now, lease_owner=None, lease_until=None)
    )
    return n + int(res.rowcount)  # type: ignore[attr-defined]


def reopen_failed(session: Session, batch_id: int) -> list[int]:
    """``failed`` jobs back to ``queued``; their ids."""
    now = utcnow()
    return list(
        session.scalars(
            update(Job)
            .where(Job.batch_id == batch_id, Job.status == JobStatus.FAILED)
            .values(
                # attempt_count is kept: attempt rows are numbered by it (unique per
                # job), so a reopened job gets one more attempt, not a fresh budget.
                status=JobStatus.QUEUED,
                error_class=None,
                last_error=None,
                finished_at=None,
                next_attempt_at=None,
                enqueued_at=now,
                updated_at=now,
            )
            .returning(Job.id)
        ).all()
    )
