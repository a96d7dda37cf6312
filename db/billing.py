"""Billing reconciliation: per provider account and day, what idbatch called (issue 15).

From the attempt table, the write-ahead record of every call: ``calls`` (attempt rows
sent), ``billable`` (answered and billable), ``in_doubt`` (the worker died mid-call:
possibly billed). ``reused`` counts jobs finished from an earlier paid answer (no call,
not billed), by the day they finished, under account ``-`` (no account was used). The
provider's invoice for a day and account should lie in ``[billable, billable+in_doubt]``;
``compare_usage`` lists the days and accounts where a provider's usage export does not.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from db.models import Attempt, Batch, Job
from idbatch.domain import AttemptOutcome


def _utc_day(session: Session, column: Any) -> Any:
    """The UTC calendar day of a timestamp (Postgres would use its session time zone)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def summary(
    session: Session,
    first: dt.date,
    last: dt.date,
    *,
    provider: str | None = None,
    account: str | None = None,
) -> list[dict[str, Any]]:
    start = dt.datetime.combine(first, dt.time(), dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC)
    day = _utc_day(session, Attempt.started_at)
    stmt = (
        select(
            Attempt.provider,
            Attempt.account,
            day.label("day"),
            func.count(),
            func.sum(case((Attempt.billable.is_(True), 1), else_=0)),
            func.sum(case((Attempt.outcome == AttemptOutcome.IN_DOUBT, 1), else_=0)),
        )
        .where(Attempt.started_at >= start, Attempt.started_at < end)
        .group_by(Attempt.provider, Attempt.account, day)
    )
    if provider:
        stmt = stmt.where(Attempt.provider == provider)
    if account:
        stmt = stmt.where(Attempt.account == account)
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for prov, acc, d, calls, billable, in_doubt in session.execute(stmt):
        rows[(prov, acc, str(d))] = {
            "provider": prov,
            "account": acc,
            "day": str(d),
            "calls": int(calls),
            "billable": int(billable or 0),
            "in_doubt": int(in_doubt or 0),
            "reused": 0,
        }
    if account in (None, "-"):
        reused_day = _utc_day(session, Job.finished_at)
        reused = (
            select(Batch.provider, reused_day, func.count())
            .join(Batch, Batch.id == Job.batch_id)
            .where(Job.reused_from.is_not(None), Job.finished_at >= start, Job.finished_at < end)
            .group_by(Batch.provider, reused_day)
        )
        if provider:
            reused = reused.where(Batch.provider == provider)
        for prov, d, n in session.execute(reused):
            key = (prov, "-", str(d))
            rows.setdefault(
                key,
                {"provider": prov, "account": "-", "day": str(d), "calls": 0, "billable": 0, "in_doubt": 0},
            )["reused"] = int(n)
    return [rows[k] for k in sorted(rows)]


def compare_usage(rows: list[dict[str, Any]], usage_csv: Path) -> list[dict[str, Any]]:
    """Days/accounts where the provider's count (CSV ``day,account,billable``) falls
    outside ``[billable, billable + in_doubt]`` of ours, or is on one side only."""
    ours = {(r["day"], r["account"]): r for r in rows if r["account"] != "-"}
    theirs: dict[tuple[str, str], int] = {}
    with usage_csv.open(newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            key = (rec["day"].strip(), rec["account"].strip())
            theirs[key] = theirs.get(key, 0) + int(rec["billable"])
    out = []
    for key in sorted(set(ours) | set(theirs)):
        mine = ours.get(key)
        billed = theirs.get(key, 0)
        low = mine["billable"] if mine else 0
        high = low + (mine["in_doubt"] if mine else 0)
        if not low <= billed <= high:
            out.append(
                {"day": key[0], "account": key[1], "ours": low, "in_doubt": high - low, "provider": billed}
            )
    return out
