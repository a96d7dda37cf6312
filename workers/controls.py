"""Batch controls: pause, resume, cancel, retry-failed. Safe while workers are busy.

Each control is one short transaction of conditional UPDATEs, so it composes with
workers without locks of its own:

- ``claim()`` only takes jobs of an *active* batch, so after ``pause``/``cancel`` no new
  call starts; messages delivered meanwhile are acknowledged and dropped (the job stays
  ``queued`` in Postgres). Calls already in flight finish and record their answer: it is
  paid for either way.
- ``resume`` makes the batch active and re-publishes its open jobs from Postgres, since
  their messages were consumed during the pause.
- ``cancel`` closes every job that is not running; a running job finishes (its answer is
  recorded) or, if its worker died, the sweeper closes it when its lease expires.
- ``retry-failed`` reopens only ``failed`` jobs (processing failed: no answer after all
  attempts), never ``negative`` ones (the provider answered "no"; asking again would be
  paying for the same answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from db.models import Batch, Job, utcnow
from db.session import session_scope
from idbatch.domain import BatchState, JobStatus
from idbatch.settings import Settings
from workers.sweeper import Publish, SweepResult, publish_jobs, sweep

NOT_RUNNING_OPEN = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RETRY_WAIT)


class BatchControlError(ValueError):
    """The batch does not exist or is in a state that forbids the control."""


@dataclass
class ControlResult:
    batch_id: int
    state: str
    jobs: int  # jobs changed or re-published


def _set_state(batch_id: int, state: BatchState, *, allowed: tuple[BatchState, ...]) -> None:
    with session_scope() as session:
        current = session.scalar(select(Batch.state).where(Batch.id == batch_id).with_for_update())
        if current is None:
            raise BatchControlError(f"batch {batch_id} does not exist")
        if current not in allowed and current != state:
            raise BatchControlError(f"batch {batch_id} is {current.value}; cannot make it {state.value}")
        session.execute(update(Batch).where(Batch.id == batch_id).values(state=state))


def pause(batch_id: int) -> ControlResult:
    _set_state(batch_id, BatchState.PAUSED, allowed=(BatchState.ACTIVE,))
    return ControlResult(batch_id, BatchState.PAUSED.value, 0)


def resume(batch_id: int, settings: Settings, publish: Publish = publish_jobs) -> ControlResult:
    _set_state(batch_id, BatchState.ACTIVE, allowed=(BatchState.PAUSED,))
    result: SweepResult = sweep(settings, publish, batch_id=batch_id, force=True)
    return ControlResult(batch_id, BatchState.ACTIVE.value, result.published)


def cancel(batch_id: int) -> ControlResult:
    _set_state(batch_id, BatchState.CANCELLED, allowed=(BatchState.ACTIVE, BatchState.PAUSED))
    now = utcnow()
    with session_scope() as session:
        res = session.execute(
            update(Job)
            .where(Job.batch_id == batch_id, Job.status.in_(NOT_RUNNING_OPEN))
            .values(status=JobStatus.CANCELLED, finished_at=now, next_attempt_at=None, updated_at=now)
        )
        n = int(res.rowcount)  # type: ignore[attr-defined]
        # A running job whose worker died will not finish by itself.
        res = session.execute(
            update(Job)
            .where(Job.batch_id == batch_id, Job.status == JobStatus.RUNNING, Job.lease_until < now)
            .values(status=JobStatus.CANCELLED, finished_at=now, lease_owner=None, lease_until=None)
        )
        n += int(res.rowcount)  # type: ignore[attr-defined]
    return ControlResult(batch_id, BatchState.CANCELLED.value, n)


def retry_failed(batch_id: int, publish: Publish = publish_jobs) -> ControlResult:
    """Reopen the batch's ``failed`` jobs (one more attempt each) and publish them."""
    now = utcnow()
    with session_scope() as session:
        state = session.scalar(select(Batch.state).where(Batch.id == batch_id))
        if state is None:
            raise BatchControlError(f"batch {batch_id} does not exist")
        if state == BatchState.CANCELLED:
            raise BatchControlError(f"batch {batch_id} is cancelled")
        ids = list(
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
    if state == BatchState.ACTIVE:
        publish(ids)  # a paused batch's jobs are published by ``resume``
    return ControlResult(batch_id, state.value, len(ids))


def as_dict(result: ControlResult) -> dict[str, Any]:
    return {"batch": result.batch_id, "state": result.state, "jobs": result.jobs}
