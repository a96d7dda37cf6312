"""``idbatch rerun`` and ``schedule run-now``: a rerun batch from stored refs, published.

The selection and the copy of the job rows are SQL (``db.reruns``); this module plans,
creates and publishes, after the commit, one fan-out message per 5,000 jobs, the way
ingest does. A rerun batch has kind ``rerun``, so its workers call the provider again
instead of reusing earlier paid answers (``db.jobs.reusable_result``): fresh calls are
the point of a compliance rerun, and the budget keeps them bounded.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from db import reruns, schedules
from db.session import session_scope
from dispatch.publish import Publisher, after_commit, publish_fanout
from idbatch.reruns import RerunPolicy, price, today
from idbatch.settings import Settings

CHUNK = 5000


@dataclass(frozen=True)
class RerunOutcome:
    batch_id: int | None  # None for a dry run
    plan: reruns.Plan
    cost: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"batch": self.batch_id, **self.plan.as_dict(), "max_cost": self.cost}


def _chunks(publish: Publisher) -> Callable[[Session, list[int]], None]:
    def on_queued(session: Session, ids: list[int]) -> None:
        for start in range(0, len(ids), CHUNK):
            after_commit(session, publish, ids[start : start + CHUNK])

    return on_queued


def rerun(
    settings: Settings,
    parent_id: int,
    policy: RerunPolicy,
    *,
    dry_run: bool = False,
    publish: Publisher = publish_fanout,
) -> RerunOutcome:
    """Plan (``dry_run``) or create and publish the rerun of ``parent_id``."""
    day = today(settings)
    with session_scope() as session:
        if dry_run:
            the_plan = reruns.plan(session, parent_id, policy, day)
            return RerunOutcome(None, the_plan, price(settings, the_plan.provider, the_plan.max_calls))
        created = reruns.create_rerun(session, parent_id, policy, day)
        _chunks(publish)(session, created.queued_ids)
    return RerunOutcome(
        created.batch_id, created.plan, price(settings, created.plan.provider, created.plan.max_calls)
    )


def release(
    settings: Settings, batch_id: int, budget: int | None, publish: Publisher = publish_fanout
) -> int:
    """Send cards a rerun's budget held back (up to ``budget`` more calls); how many."""
    with session_scope() as session:
        ids = reruns.release_held(session, batch_id, budget)
        _chunks(publish)(session, ids)
    return len(ids)


def run_now(settings: Settings, name: str, publish: Publisher = publish_fanout) -> dict[str, Any] | None:
    """Fire schedule ``name`` now (its slot: this second), recorded like a beat firing."""
    with session_scope() as session:
        due = schedules.by_name(session, name)
    return schedules.fire_slot(due, today(settings), f"run-now@{socket.gethostname()}", _chunks(publish))
