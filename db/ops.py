"""Queries for operating idbatch: the batch list, the backlog on scrape, the HTML report's series.

Like ``db.reports`` these read the job and attempt tables themselves, never counters kept
on the side. None of them runs on the per-job path.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Attempt, Batch, Job
from idbatch.domain import TERMINAL_STATUSES, BatchState, JobStatus

OPEN_STATUSES = tuple(s for s in JobStatus if s not in TERMINAL_STATUSES)


@dataclass
class BatchLine:
    """One row of ``idbatch batches``."""

    id: int
    kind: str
    state: str
    provider: str
    created_at: str
    total_rows: int
    counts: dict[str, int]
    terminal: int
    finished: bool

    @property
    def progress(self) -> float:
        jobs = sum(self.counts.values())
        return 1.0 if jobs == 0 else self.terminal / jobs

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "progress": round(self.progress, 4)}


def recent_batches(session: Session, limit: int = 20, state: BatchState | None = None) -> list[BatchLine]:
    """The newest ``limit`` batches with their counts by status (one GROUP BY for all of them)."""
    query = select(Batch).order_by(Batch.id.desc()).limit(limit)
    if state is not None:
        query = query.where(Batch.state == state)
    batches = list(session.scalars(query))
    if not batches:
        return []
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for batch_id, status, n in session.execute(
        select(Job.batch_id, Job.status, func.count())
        .where(Job.batch_id.in_([b.id for b in batches]))
        .group_by(Job.batch_id, Job.status)
    ):
        counts[batch_id][JobStatus(status).value] = int(n)
    lines = []
    for b in batches:
        c = counts.get(b.id, {})
        terminal = sum(n for s, n in c.items() if JobStatus(s) in TERMINAL_STATUSES)
        lines.append(
            BatchLine(
                id=b.id,
                kind=b.kind.value,
                state=b.state.value,
                provider=b.provider,
                created_at=b.created_at.isoformat(timespec="seconds") if b.created_at else "",
                total_rows=b.total_rows,
                counts=c,
                terminal=terminal,
                finished=b.finished_at is not None
                or (b.ingest_complete and terminal == sum(c.values()) == b.total_rows),
            )
        )
    return lines


def backlog(session: Session) -> list[tuple[str, str, int]]:
    """Open jobs of active batches by (provider, status): read by the beat's scrape collector."""
    rows = session.execute(
        select(Batch.provider, Job.status, func.count())
        .join(Batch, Batch.id == Job.batch_id)
        .where(Batch.state == BatchState.ACTIVE, Job.status.in_(OPEN_STATUSES))
        .group_by(Batch.provider, Job.status)
    ).all()
    return [(str(p), JobStatus(s).value, int(n)) for p, s, n in rows]


@dataclass
class Series:
    """What the HTML report draws beyond ``db.reports.Report``."""

    # calls started per second since the first call: [(second, calls, billable)]
    per_second: list[tuple[int, int, int]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    errors_by_code: dict[str, int] = field(default_factory=dict)
    attempts_per_job: dict[int, int] = field(default_factory=dict)  # attempts → jobs
    accounts: dict[str, int] = field(default_factory=dict)  # billable calls by account
    started: dt.datetime | None = None


def report_series(session: Session, batch_id: int, *, max_points: int = 200_000) -> Series:
    """Calls over time, latencies, errors and retries of a batch (at most ``max_points`` calls)."""
    job_ids = select(Job.id).where(Job.batch_id == batch_id).scalar_subquery()
    rows = session.execute(
        select(
            Attempt.started_at,
            Attempt.latency_ms,
            Attempt.billable,
            Attempt.provider_code,
            Attempt.http_status,
            Attempt.error,
            Attempt.account,
        )
        .where(Attempt.job_id.in_(job_ids))
        .order_by(Attempt.started_at)
        .limit(max_points)
    ).all()
    series = Series()
    if rows:
        t0 = rows[0].started_at
        series.started = t0
        seconds: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        errors: Counter[str] = Counter()
        accounts: Counter[str] = Counter()
        for r in rows:
            s = int((r.started_at - t0).total_seconds()) if r.started_at and t0 else 0
            seconds[s][0] += 1
            if r.billable:
                seconds[s][1] += 1
                accounts[str(r.account)] += 1
            if r.latency_ms is not None:
                series.latencies_ms.append(float(r.latency_ms))
            if r.error is not None:
                errors[r.provider_code or (str(r.http_status) if r.http_status else "error")] += 1
        last = max(seconds)
        series.per_second = [(s, *seconds.get(s, [0, 0])) for s in range(last + 1)]  # type: ignore[misc]
        series.errors_by_code = dict(errors.most_common())
        series.accounts = dict(accounts.most_common())
    series.attempts_per_job = {
        int(a): int(n)
        for a, n in session.execute(
            select(Job.attempt_count, func.count())
            .where(Job.batch_id == batch_id)
            .group_by(Job.attempt_count)
            .order_by(Job.attempt_count)
        )
    }
    return series
