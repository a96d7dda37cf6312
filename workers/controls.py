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

from db import batches
from db.batches import BatchControlError
from db.session import session_scope
from dispatch.publish import Publisher, after_commit, publish_jobs
from idbatch.domain import BatchState
from idbatch.settings import Settings
from workers.sweeper import sweep

__all__ = ["BatchControlError", "ControlResult", "as_dict", "cancel", "pause", "resume", "retry_failed"]


@dataclass
class ControlResult:
    batch_id: int
    state: str
    jobs: int  # jobs changed or re-published


def _set_state(batch_id: int, state: BatchState, *, allowed: tuple[BatchState, ...]) -> None:
    with session_scope() as session:
        batches.set_state(session, batch_id, state, allowed=allowed)


def pause(batch_id: int) -> ControlResult:
    _set_state(batch_id, BatchState.PAUSED, allowed=(BatchState.ACTIVE,))
    return ControlResult(batch_id, BatchState.PAUSED.value, 0)


def resume(batch_id: int, settings: Settings, publish: Publisher = publish_jobs) -> ControlResult:
    _set_state(batch_id, BatchState.ACTIVE, allowed=(BatchState.PAUSED,))
    result = sweep(settings, publish, batch_id=batch_id, force=True)
    return ControlResult(batch_id, BatchState.ACTIVE.value, result.published)


def cancel(batch_id: int) -> ControlResult:
    _set_state(batch_id, BatchState.CANCELLED, allowed=(BatchState.ACTIVE, BatchState.PAUSED))
    with session_scope() as session:
        n = batches.cancel_jobs(session, batch_id)
    return ControlResult(batch_id, BatchState.CANCELLED.value, n)


def retry_failed(batch_id: int, publish: Publisher = publish_jobs) -> ControlResult:
    """Reopen the batch's ``failed`` jobs (one more attempt each) and publish them."""
    with session_scope() as session:
        state = batches.state_of(session, batch_id)
        if state == BatchState.CANCELLED:
            raise BatchControlError(f"batch {batch_id} is cancelled")
        ids = batches.reopen_failed(session, batch_id)
        if state == BatchState.ACTIVE:  # a paused batch's jobs are published by ``resume``
            after_commit(session, publish, ids)
    return ControlResult(batch_id, state.value, len(ids))


def as_dict(result: ControlResult) -> dict[str, Any]:
    return {"batch": result.batch_id, "state": result.state, "jobs": result.jobs}
