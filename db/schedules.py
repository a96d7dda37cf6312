"""Rerun schedules in SQL: add, list, pause, remove, and fire a slot exactly once.

``claim_slot`` is the exactly-once point. Every beat process (and ``run-now``) that finds
a slot due tries to INSERT its (schedule, slot) row; the unique constraint lets exactly
one insert land (``ON CONFLICT DO NOTHING``: the losers get no row back and do nothing).
The winner creates the rerun batch *in the same transaction*, so a firing row never
exists without its batch, and a crash before the commit leaves neither (the next beat
tick fires the slot again).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db import reruns
from db.models import Batch, utcnow
from db.models_rerun import RerunFiring, RerunSchedule
from db.session import session_scope
from idbatch.reruns import RerunPolicy, check_cron, due_slot, next_slot


class ScheduleError(ValueError):
    """A schedule that does not exist, or a name already taken; said in one line."""


@dataclass(frozen=True)
class Due:
    schedule_id: int
    name: str
    batch_id: int
    policy: RerunPolicy
    slot: dt.datetime


def add(session: Session, name: str, cron: str, batch_id: int, policy: RerunPolicy) -> int:
    check_cron(cron)
    if session.get(Batch, batch_id) is None:
        raise ScheduleError(f"batch {batch_id} does not exist")
    if session.scalar(select(RerunSchedule.id).where(RerunSchedule.name == name)) is not None:
        raise ScheduleError(f"a schedule named {name!r} exists")
    now = utcnow()
    row = RerunSchedule(
        name=name, cron=cron, batch_id=batch_id, policy=policy.as_dict(), created_at=now, last_slot=now
    )
    session.add(row)
    session.flush()
    return row.id


def _named(session: Session, name: str) -> RerunSchedule:
    row = session.scalar(select(RerunSchedule).where(RerunSchedule.name == name))
    if row is None:
        raise ScheduleError(f"no schedule named {name!r}")
    return row


def set_paused(session: Session, name: str, paused: bool) -> None:
    _named(session, name).paused = paused


def remove(session: Session, name: str) -> None:
    """Delete the schedule; its firings stay (``schedule_name`` kept) for the record."""
    row = _named(session, name)
    session.execute(delete(RerunSchedule).where(RerunSchedule.id == row.id))


def listing(session: Session, now: dt.datetime) -> list[dict[str, Any]]:
    out = []
    for row in session.scalars(select(RerunSchedule).order_by(RerunSchedule.name)):
        last = session.execute(
            select(RerunFiring.slot, RerunFiring.batch_id, RerunFiring.outcome)
            .where(RerunFiring.schedule_id == row.id)
            .order_by(RerunFiring.slot.desc())
            .limit(1)
        ).first()
        out.append(
            {
                "name": row.name,
                "cron": row.cron,
                "batch": row.batch_id,
                "policy": row.policy,
                "paused": row.paused,
                "next_slot": None if row.paused else next_slot(row.cron, now).isoformat(),
                "last_firing": None
                if last is None
                else {"slot": last.slot.isoformat(), "batch": last.batch_id, "outcome": last.outcome},
            }
        )
    return out


def due(session: Session, now: dt.datetime) -> list[Due]:
    """Schedules with a slot in ``(last_slot, now]``: the latest such slot each (one catch-up)."""
    out = []
    for row in session.scalars(select(RerunSchedule).where(RerunSchedule.paused.is_(False))):
        since = row.last_slot or row.created_at
        slot = due_slot(row.cron, since, now)
        if slot is not None:
            out.append(Due(row.id, row.name, row.batch_id, RerunPolicy.from_dict(row.policy), slot))
    return out


def by_name(session: Session, name: str) -> Due:
    """The schedule as a firing for ``run-now``: its slot is now (to the second)."""
    row = _named(session, name)
    now = utcnow().replace(microsecond=0)
    return Due(row.id, row.name, row.batch_id, RerunPolicy.from_dict(row.policy), now)


def claim_slot(session: Session, due: Due, fired_by: str) -> int | None:
    """Insert the (schedule, slot) row; its id if this process won the slot, else None."""
    values = {
        "schedule_id": due.schedule_id,
        "schedule_name": due.name,
        "slot": due.slot,
        "fired_by": fired_by,
        "fired_at": utcnow(),
        "outcome": "firing",
    }
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = (
        module.insert(RerunFiring)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["schedule_id", "slot"])
        .returning(RerunFiring.id)
    )
    firing = session.scalar(stmt)
    # Move the schedule on whoever won: a loser's view of last_slot must not refire it.
    session.execute(
        update(RerunSchedule)
        .where(RerunSchedule.id == due.schedule_id)
        .where((RerunSchedule.last_slot.is_(None)) | (RerunSchedule.last_slot < due.slot))
        .values(last_slot=due.slot)
    )
    return None if firing is None else int(firing)


def record(session: Session, firing_id: int, outcome: str, batch_id: int | None, detail: str | None) -> None:
    session.execute(
        update(RerunFiring)
        .where(RerunFiring.id == firing_id)
        .values(outcome=outcome, batch_id=batch_id, detail=detail)
    )


def firings(session: Session, name: str | None = None) -> list[dict[str, Any]]:
    stmt = select(RerunFiring).order_by(RerunFiring.slot, RerunFiring.id)
    if name is not None:
        stmt = stmt.where(RerunFiring.schedule_name == name)
    return [
        {
            "schedule": f.schedule_name,
            "slot": f.slot.isoformat(),
            "fired_at": f.fired_at.isoformat(),
            "fired_by": f.fired_by,
            "batch": f.batch_id,
            "outcome": f.outcome,
            "detail": f.detail,
        }
        for f in session.scalars(stmt)
    ]


OnQueued = Callable[[Session, list[int]], None]


def fire_slot(due: Due, today: dt.date, fired_by: str, on_queued: OnQueued) -> dict[str, Any] | None:
    """Fire ``due`` if this process wins its slot: one transaction for the firing row and
    the rerun batch; ``on_queued(session, ids)`` registers the publish after the commit.

    Returns what was recorded, or None when another process had the slot already.
    """
    with session_scope() as session:
        firing = claim_slot(session, due, fired_by)
        if firing is None:
            return None
        parent = reruns.latest_in_lineage(session, due.batch_id)
        if reruns.still_running(session, parent):
            # The last run has not finished: a second one now would pay for the same
            # cards twice. The slot is recorded as skipped; the next slot tries again.
            record(session, firing, "skipped", None, f"batch {parent} still running")
            return {"firing": firing, "outcome": "skipped", "batch": None, "parent": parent}
        created = reruns.create_rerun(
            session,
            parent,
            due.policy,
            today,
            schedule_id=due.schedule_id,
        )
        outcome = "fired" if created.plan.selected else "empty"
        record(session, firing, outcome, created.batch_id, None)
        on_queued(session, created.queued_ids)
        return {
            "firing": firing,
            "outcome": outcome,
            "batch": created.batch_id,
            "parent": parent,
            **created.plan.as_dict(),
        }
