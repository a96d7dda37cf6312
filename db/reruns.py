"""Rerun batches in SQL: choose a batch's cards by policy, plan the calls, create the rerun.

A rerun re-verifies cards from their *stored* refs and claims: the job rows are copied
server-side (``INSERT … SELECT``), so a rerun of a million cards never passes through
Python. The refs were checked when they were first ingested and are checked again by
the worker before it reads them (allowlists, SSRF, local roots), which turns a ref that
is no longer readable into a rejected job with the reason, as for any batch.

Each card keeps its parent's ``row_number``: one card is one row number in every batch
of a lineage (drift and history join on it). The budget is applied here: cards are
taken in row order while their worst-case billable calls fit (``idbatch.reruns.
calls_per_card``); the rest are inserted ``pending`` with ``error_class = budget``, which
the sweeper leaves alone, so they are neither sent nor lost.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    case,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from db.models import Batch, Job, Result, utcnow
from db.models_rerun import RerunLink
from idbatch.domain import TERMINAL_STATUSES, BatchKind, ErrorClass, JobStatus
from idbatch.reruns import TWO_SIDED, RerunPolicy


class RerunError(ValueError):
    """The batch cannot be rerun (missing); said in one line."""


@dataclass(frozen=True)
class Plan:
    """What a rerun would do: cards chosen, sent now, held by the budget, calls at most."""

    parent_id: int
    provider: str
    selected: int
    to_send: int
    held: int
    max_calls: int  # billable calls the cards sent now can cost at most (<= budget)
    budget: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "parent": self.parent_id,
            "provider": self.provider,
            "cards_selected": self.selected,
            "cards_sent": self.to_send,
            "cards_held_by_budget": self.held,
            "max_billable_calls": self.max_calls,
            "budget": self.budget,
        }


@dataclass(frozen=True)
class Created:
    batch_id: int
    plan: Plan
    queued_ids: list[int]


def _policy_filter(policy: RerunPolicy, today: dt.date, now: dt.datetime) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Job.front_image.is_not(None)]  # a malformed row has no card
    if policy.statuses:
        where.append(Job.status.in_([JobStatus(s) for s in policy.statuses]))
    if policy.older_than_days is not None:
        last = func.coalesce(Result.answered_at, Result.created_at)
        cutoff = now - dt.timedelta(days=policy.older_than_days)
        where.append(or_(last.is_(None), last < cutoff))  # never answered: due too
    if policy.expiring_days is not None:
        where.append(
            and_(
                Result.valid_to.is_not(None),
                Result.valid_to <= today + dt.timedelta(days=policy.expiring_days),
            )
        )
    if policy.ref_prefix:
        escaped = policy.ref_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(Job.external_ref.like(f"{escaped}%", escape="\\"))
    return where


def _batch(session: Session, batch_id: int) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise RerunError(f"batch {batch_id} does not exist")
    return batch


def _selection(session: Session, parent: Batch, policy: RerunPolicy, today: dt.date) -> Any:
    """The chosen parent jobs with each card's running total of worst-case calls."""
    two_sided = parent.provider in TWO_SIDED
    # worst-case billable calls of one card: the OCR vendors bill a sent back side too
    cost = case((Job.back_image.is_not(None), 2), else_=1) if two_sided else literal(1)
    return (
        select(
            Job.id.label("parent_job"),
            Job.row_number,
            Job.line_number,
            Job.external_ref,
            Job.front_image,
            Job.back_image,
            Job.claimed_name_enc,
            Job.claimed_id_enc,
            Job.claimed_id_hash,
            Job.idempotency_key,
            cast(cost, Integer).label("cost"),
            func.sum(cost).over(order_by=Job.row_number).label("spent"),
        )
        .select_from(Job)
        .outerjoin(Result, Result.job_id == Job.id)
        .where(Job.batch_id == parent.id, *_policy_filter(policy, today, utcnow()))
        .subquery("chosen")
    )


def plan(session: Session, parent_id: int, policy: RerunPolicy, today: dt.date) -> Plan:
    parent = _batch(session, parent_id)
    chosen = _selection(session, parent, policy, today)
    within = chosen.c.spent <= policy.budget if policy.budget is not None else literal(True)
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((within, 1), else_=0)), 0),
            func.coalesce(func.sum(case((within, chosen.c.cost), else_=0)), 0),
        ).select_from(chosen)
    ).one()
    selected, to_send, calls = int(row[0]), int(row[1]), int(row[2])
    return Plan(parent.id, parent.provider, selected, to_send, selected - to_send, calls, policy.budget)


def root_of(session: Session, batch_id: int) -> int:
    """The first batch of ``batch_id``'s lineage (itself unless it is a rerun)."""
    root = session.scalar(select(RerunLink.root_id).where(RerunLink.batch_id == batch_id))
    return int(root) if root is not None else batch_id


def parent_of(session: Session, batch_id: int) -> int | None:
    found = session.scalar(select(RerunLink.parent_id).where(RerunLink.batch_id == batch_id))
    return None if found is None else int(found)


def latest_in_lineage(session: Session, root_id: int) -> int:
    """The newest batch of the lineage started by ``root_id``: what a schedule reruns next."""
    latest = session.scalar(select(func.max(RerunLink.batch_id)).where(RerunLink.root_id == root_id))
    return int(latest) if latest is not None else root_id


def still_running(session: Session, batch_id: int) -> bool:
    """Whether ``batch_id`` has jobs still on their way (budget-held ones do not count)."""
    open_jobs = select(Job.id).where(
        Job.batch_id == batch_id,
        Job.status.not_in(list(TERMINAL_STATUSES)),
        or_(Job.error_class.is_(None), Job.error_class != ErrorClass.BUDGET),
    )
    return session.scalar(select(open_jobs.exists())) is True


def create_rerun(
    session: Session,
    parent_id: int,
    policy: RerunPolicy,
    today: dt.date,
    *,
    schedule_id: int | None = None,
) -> Created:
    """The rerun batch of ``parent_id`` under ``policy``, in the caller's transaction.

    The batch keeps its parent's ``source``: relative image refs resolve against the
    manifest's folder, as they did the first time (the link to the parent is in
    ``rerun_link``). Returns the ids to publish once the transaction commits.
    """
    parent = _batch(session, parent_id)
    the_plan = plan(session, parent_id, policy, today)
    batch = Batch(
        source=parent.source,
        kind=BatchKind.RERUN,
        provider=parent.provider,
        provider_config=dict(parent.provider_config or {}),
        accounts=parent.accounts,  # a rerun of a tenant's batch pays on the same accounts
        tenant_id=parent.tenant_id,  # and stays the tenant's: its API sees it, no other does
    )
    session.add(batch)
    session.flush()
    chosen = _selection(session, parent, policy, today)
    within = chosen.c.spent <= policy.budget if policy.budget is not None else literal(True)
    now = utcnow()
    columns = [
        "batch_id", "row_number", "line_number", "external_ref", "front_image", "back_image",
        "claimed_name_enc", "claimed_id_enc", "claimed_id_hash", "idempotency_key", "status",
        "error_class", "attempt_count", "claim_seq", "enqueued_at", "created_at", "updated_at",
    ]  # fmt: skip
    rows = select(
        literal(batch.id),
        chosen.c.row_number,
        chosen.c.line_number,
        chosen.c.external_ref,
        chosen.c.front_image,
        chosen.c.back_image,
        chosen.c.claimed_name_enc,
        chosen.c.claimed_id_enc,
        chosen.c.claimed_id_hash,
        chosen.c.idempotency_key,
        case((within, literal(JobStatus.QUEUED.value)), else_=literal(JobStatus.PENDING.value)),
        case((within, None), else_=literal(ErrorClass.BUDGET.value)),
        literal(0),
        literal(0),
        literal(now),
        literal(now),
        literal(now),
    ).order_by(chosen.c.row_number)
    session.execute(insert(Job).from_select(columns, rows))
    session.execute(
        update(Batch)
        .where(Batch.id == batch.id)
        .values(
            total_rows=the_plan.selected, ingest_complete=True, finished_at=None if the_plan.selected else now
        )
    )
    session.add(
        RerunLink(
            batch_id=batch.id,
            parent_id=parent.id,
            root_id=root_of(session, parent.id),
            schedule_id=schedule_id,
            policy=policy.as_dict(),
            selected=the_plan.selected,
            held=the_plan.held,
        )
    )
    queued = list(
        session.scalars(
            select(Job.id).where(Job.batch_id == batch.id, Job.status == JobStatus.QUEUED).order_by(Job.id)
        )
    )
    return Created(batch.id, the_plan, queued)


def release_held(session: Session, batch_id: int, budget: int | None) -> list[int]:
    """Send cards a budget held back: up to ``budget`` more billable calls (None: all).

    Returns the ids now ``queued`` (publish them after the commit).
    """
    batch = _batch(session, batch_id)
    two_sided = batch.provider in TWO_SIDED
    held = session.execute(
        select(Job.id, Job.back_image)
        .where(
            Job.batch_id == batch_id, Job.status == JobStatus.PENDING, Job.error_class == ErrorClass.BUDGET
        )
        .order_by(Job.row_number)
    ).all()
    take: list[int] = []
    spent = 0
    for job_id, back in held:
        cost = 2 if two_sided and back is not None else 1
        if budget is not None and spent + cost > budget:
            break
        spent += cost
        take.append(int(job_id))
    for start in range(0, len(take), 1000):
        session.execute(
            update(Job)
            .where(Job.id.in_(take[start : start + 1000]))
            .values(status=JobStatus.QUEUED, error_class=None, enqueued_at=utcnow(), updated_at=utcnow())
        )
    return take
