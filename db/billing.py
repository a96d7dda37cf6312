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


class UsageError(ValueError):
    """A usage export that cannot be read as ``day,account,billable``: said with its line."""


USAGE_COLUMNS = ("day", "account", "billable")


def read_usage(
    usage_csv: Path, first: dt.date, last: dt.date, *, account: str | None = None
) -> dict[tuple[str, str], int]:
    """The provider's billable count per (day, account) from its usage CSV, for the days
    ``first..last`` (and ``account``, if given) only: rows outside the range are the
    provider's other days, not differences.

    Streamed row by row into one total per day and account, so the memory is the number
    of days × accounts, not the file's rows. Headers are matched without case or spaces
    and a UTF-8 byte-order mark (an Excel export) is skipped; other columns are ignored.
    A day is ``YYYY-MM-DD`` and a count a whole number ≥ 0: anything else is refused with
    its line number, not guessed (``12/01/2026`` could be either month).
    """
    theirs: dict[tuple[str, str], int] = {}
    try:
        with usage_csv.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise UsageError("empty file: the first line must be the header day,account,billable")
            names = [h.strip().lower() for h in header]
            missing = [c for c in USAGE_COLUMNS if c not in names]
            if missing:
                raise UsageError(f"no column {', '.join(missing)} in the header (needs day,account,billable)")
            i_day, i_acc, i_billed = (names.index(c) for c in USAGE_COLUMNS)
            width = max(i_day, i_acc, i_billed) + 1
            for rec in reader:
                line = reader.line_num
                if not any(field.strip() for field in rec):
                    continue  # a blank line
                if len(rec) < width:
                    raise UsageError(f"line {line}: {len(rec)} fields, the header has {len(names)}")
                day_text, acc, billed_text = rec[i_day].strip(), rec[i_acc].strip(), rec[i_billed].strip()
                day = _usage_day(day_text, line)
                if not billed_text.isascii() or not billed_text.isdigit():
                    raise UsageError(f"line {line}: billable {billed_text!r} is not a whole number >= 0")
                if not first <= day <= last or (account is not None and acc != account):
                    continue
                key = (day.isoformat(), acc)
                theirs[key] = theirs.get(key, 0) + int(billed_text)
    except UnicodeDecodeError as exc:
        raise UsageError(f"not UTF-8 text (byte {exc.start}): save the export as UTF-8 CSV") from exc
    except csv.Error as exc:
        raise UsageError(f"not a CSV file ({exc})") from exc
    except OSError as exc:
        raise UsageError(exc.strerror or type(exc).__name__) from exc
    return theirs


def _usage_day(text: str, line: int) -> dt.date:
    try:
        if len(text) != 10 or text[4] != "-" or text[7] != "-":
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"line {line}: day {text[:40]!r} is not YYYY-MM-DD") from None


def compare_usage(
    rows: list[dict[str, Any]],
    usage_csv: Path,
    first: dt.date,
    last: dt.date,
    *,
    account: str | None = None,
) -> list[dict[str, Any]]:
    """Days/accounts where the provider's count (CSV ``day,account,billable``) falls
    outside ``[billable, billable + in_doubt]`` of ours, or is on one side only.

    ``rows`` are one provider's (a usage export is one provider's: the command asks for
    ``--provider``); were there several, an account name two providers share would add
    up both, so the rows of one (day, account) are summed, never overwritten.
    """
    ours: dict[tuple[str, str], tuple[int, int]] = {}
    for r in rows:
        if r["account"] != "-":
            key = (r["day"], r["account"])
            low, doubt = ours.get(key, (0, 0))
            ours[key] = (low + r["billable"], doubt + r["in_doubt"])
    theirs = read_usage(usage_csv, first, last, account=account)
    out = []
    for key in sorted(set(ours) | set(theirs)):
        low, doubt = ours.get(key, (0, 0))
        billed = theirs.get(key, 0)
        if not low <= billed <= low + doubt:
            out.append({"day": key[0], "account": key[1], "ours": low, "in_doubt": doubt, "provider": billed})
    return out
