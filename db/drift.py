"""Drift: what changed for each card between two verifications of it (issue 15).

Cards are matched by ``row_number``: a rerun keeps its parent's (``db.reruns``), so a
card is one row number in every batch of a lineage. For every card verified in both
batches this lists, when anything changed:

- ``status``: the outcome moved (``passed`` → ``negative`` and back, ``failed`` → …);
- ``new_warnings`` / ``cleared_warnings``: warning codes that appeared or went away;
- ``changed_fields``: address, validity (from, to, long term), issuing authority;
- ``newly_expired``: the card is expired now and was not then.

Cards not verified in one of the two (held by a budget, still open, rejected before a
call) are counted, not compared. Pages of ``PAGE`` cards keep memory bounded. The
address is compared decrypted and never shown: only the field's name is listed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Job, JobWarning, Result
from idbatch.domain import JobStatus, WarningCode
from idbatch.pii import AD_ADDRESS, vault

PAGE = 1000
VERIFIED = (JobStatus.PASSED, JobStatus.NEGATIVE)
FIELDS = ("address", "valid_from", "valid_to", "valid_long_term", "authority")


@dataclass
class CardState:
    job_id: int
    ref: str | None
    status: str
    warnings: frozenset[str]
    fields: dict[str, Any]

    @property
    def expired(self) -> bool:
        return WarningCode.EXPIRED.value in self.warnings


@dataclass
class DriftReport:
    batch_id: int
    against: int
    compared: int = 0
    not_compared: int = 0
    changed: int = 0  # every changed card, however many ``changes`` lists (``limit``)
    changes: list[dict[str, Any]] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch_id,
            "against": self.against,
            "compared": self.compared,
            "not_compared": self.not_compared,
            "changed": self.changed,
            "listed": len(self.changes),
            "by_kind": dict(self.by_kind),
            "changes": self.changes,
        }


def _states(session: Session, batch_id: int, low: int, high: int) -> dict[int, CardState]:
    rows = session.execute(
        select(
            Job.id,
            Job.row_number,
            Job.external_ref,
            Job.status,
            Result.address_enc,
            Result.valid_from,
            Result.valid_to,
            Result.valid_long_term,
            Result.authority,
        )
        .outerjoin(Result, Result.job_id == Job.id)
        .where(Job.batch_id == batch_id, Job.row_number >= low, Job.row_number < high)
    ).all()
    ids = [r.id for r in rows]
    warns: dict[int, set[str]] = defaultdict(set)
    if ids:
        for job_id, code in session.execute(
            select(JobWarning.job_id, JobWarning.code).where(JobWarning.job_id.in_(ids))
        ):
            warns[job_id].add(code)
    v = vault()
    out = {}
    for r in rows:
        out[int(r.row_number)] = CardState(
            r.id,
            r.external_ref,
            JobStatus(r.status).value,
            frozenset(warns.get(r.id, ())),
            {
                "address": v.decrypt(r.address_enc, AD_ADDRESS),
                "valid_from": r.valid_from,
                "valid_to": r.valid_to,
                "valid_long_term": r.valid_long_term,
                "authority": r.authority,
            },
        )
    return out


def compare(before: CardState, after: CardState) -> dict[str, Any] | None:
    """One card's drift, or None when nothing changed."""
    change: dict[str, Any] = {}
    if before.status != after.status:
        change["status"] = f"{before.status} -> {after.status}"
    new, cleared = sorted(after.warnings - before.warnings), sorted(before.warnings - after.warnings)
    if new:
        change["new_warnings"] = new
    if cleared:
        change["cleared_warnings"] = cleared
    # A field the provider did not read this time (None) is not a change of the card.
    changed = [
        f for f in FIELDS if after.fields[f] is not None and before.fields[f] not in (None, after.fields[f])
    ]
    if changed:
        change["changed_fields"] = changed
    if after.expired and not before.expired:
        change["newly_expired"] = True
    return change or None


def _row_range(session: Session, batch_id: int) -> tuple[int, int]:
    from sqlalchemy import func

    low, high = session.execute(
        select(func.min(Job.row_number), func.max(Job.row_number)).where(Job.batch_id == batch_id)
    ).one()
    return int(low or 0), int(high or -1)


def iter_drift(
    session: Session, batch_id: int, against: int
) -> Iterator[tuple[CardState, dict[str, Any] | None]]:
    """(the card now, its drift or None) for each card of ``batch_id``; None drift for
    cards not verified in both batches is told apart by ``CardState.status``."""
    low, high = _row_range(session, batch_id)
    for start in range(low, high + 1, PAGE):
        now = _states(session, batch_id, start, start + PAGE)
        then = _states(session, against, start, start + PAGE)
        for row in sorted(now):
            after, before = now[row], then.get(row)
            if before is None or after.status not in VERIFIED or before.status not in VERIFIED:
                yield after, {"not_compared": True}
                continue
            yield after, compare(before, after)


def drift(session: Session, batch_id: int, against: int, *, limit: int | None = None) -> DriftReport:
    """Every changed card of ``batch_id`` against batch ``against`` (refs, never PII)."""
    report = DriftReport(batch_id, against)
    for card, change in iter_drift(session, batch_id, against):
        if change is not None and change.get("not_compared"):
            report.not_compared += 1
            continue
        report.compared += 1
        if change is None:
            continue
        report.changed += 1
        for kind in change:
            report.by_kind[kind] += 1
        if limit is None or len(report.changes) < limit:
            report.changes.append({"ref": card.ref, "job": card.job_id, **change})
    return report
