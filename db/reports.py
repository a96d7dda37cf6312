"""The reconciliation report: every input row accounted for, by status and by reason.

Counts come from the job table itself (GROUP BY), never from counters kept on the side,
so they cannot drift from the truth. PII is masked unless ``reveal`` is asked for.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Attempt, Batch, Job, JobWarning, Result
from idbatch.domain import TERMINAL_STATUSES, AttemptOutcome, JobStatus, WarningSource
from idbatch.pii import AD_ID_NUMBER, AD_NAME, mask_birth, mask_id, mask_name, scrub, vault


@dataclass
class Report:
    batch_id: int
    source: str
    provider: str
    kind: str
    state: str
    total_rows: int
    jobs: int
    counts: dict[str, int]
    terminal: int
    attempts: int
    billable_calls: int
    retried_jobs: int
    warnings: dict[str, int]
    local_check_failures: dict[str, int]
    claim_mismatches: dict[str, int]
    provider_codes: dict[str, int]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    # passed/negative jobs answered by reusing an earlier paid answer for the same card
    # (duplicate rows, resubmitted manifests): counted in ``counts``, no provider call.
    reused: int = 0
    # Calls whose worker died mid-call: possibly billed. billable + in_doubt is the most the
    # provider can have billed for this batch; the invoice must fall between the two.
    in_doubt_calls: int = 0
    finished_at: str | None = None
    # A rerun's drift against its parent (issue 15): counts by kind, the first changed cards.
    drift: dict[str, Any] | None = None

    @property
    def accounted(self) -> bool:
        return self.jobs == self.total_rows == sum(self.counts.values())

    @property
    def done(self) -> bool:
        return self.terminal == self.jobs and self.jobs == self.total_rows

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["accounted"] = self.accounted
        data["done"] = self.done
        return data


def status_counts(session: Session, batch_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Job.status, func.count()).where(Job.batch_id == batch_id).group_by(Job.status)
    ).all()
    return {JobStatus(status).value: int(n) for status, n in rows}


def ingest_state(session: Session, batch_id: int) -> tuple[bool, int]:
    """(ingest complete, input rows counted so far) of a batch."""
    row = session.execute(select(Batch.ingest_complete, Batch.total_rows).where(Batch.id == batch_id)).one()
    return bool(row.ingest_complete), int(row.total_rows)


def build_report(session: Session, batch_id: int, *, reveal: bool = False, limit: int = 20) -> Report:
    batch = session.get_one(Batch, batch_id)
    counts = status_counts(session, batch_id)
    jobs = sum(counts.values())
    terminal = sum(n for s, n in counts.items() if JobStatus(s) in TERMINAL_STATUSES)
    job_ids = select(Job.id).where(Job.batch_id == batch_id).scalar_subquery()
    attempts, billable = session.execute(
        select(
            func.count(), func.coalesce(func.sum(Attempt.billable.cast(type_=Job.attempt_count.type)), 0)
        ).where(Attempt.job_id.in_(job_ids))
    ).one()
    in_doubt = session.scalar(
        select(func.count()).where(Attempt.job_id.in_(job_ids), Attempt.outcome == AttemptOutcome.IN_DOUBT)
    )
    retried = session.scalar(select(func.count()).where(Job.batch_id == batch_id, Job.attempt_count > 1))
    reused = session.scalar(
        select(func.count()).where(Job.batch_id == batch_id, Job.reused_from.is_not(None))
    )
    warn_rows = session.execute(
        select(JobWarning.code, JobWarning.source, func.count())
        .where(JobWarning.job_id.in_(job_ids))
        .group_by(JobWarning.code, JobWarning.source)
    ).all()
    warnings: Counter[str] = Counter()
    local: Counter[str] = Counter()
    claims: Counter[str] = Counter()
    for code, source, n in warn_rows:
        warnings[code] += n
        if source == WarningSource.LOCAL:
            local[code] += n
        elif source == WarningSource.CLAIM:
            claims[code] += n
    codes: dict[str | None, int] = dict(
        session.execute(
            select(Attempt.provider_code, func.count())
            .where(Attempt.job_id.in_(job_ids))
            .group_by(Attempt.provider_code)
        )
        .tuples()
        .all()
    )

    def job_rows(status: JobStatus) -> list[dict[str, Any]]:
        rows = session.execute(
            select(Job.row_number, Job.external_ref, Job.last_error, Job.attempt_count)
            .where(Job.batch_id == batch_id, Job.status == status)
            .order_by(Job.row_number)
            .limit(limit)
        ).all()
        return [
            {
                "row": r.row_number,
                "ref": r.external_ref if reveal else _ref(r.external_ref),
                "reason": r.last_error,
                "attempts": r.attempt_count,
            }
            for r in rows
        ]

    v = vault()
    samples = []
    for job, result in session.execute(
        select(Job, Result)
        .join(Result, Result.job_id == Job.id)
        .where(Job.batch_id == batch_id)
        .order_by(Job.row_number)
        .limit(min(limit, 5))
    ).all():
        name, number = v.decrypt(result.name_enc, AD_NAME), v.decrypt(result.id_number_enc, AD_ID_NUMBER)
        samples.append(
            {
                "row": job.row_number,
                "ref": job.external_ref if reveal else _ref(job.external_ref),
                "status": job.status.value,
                "name": name if reveal else mask_name(name),
                "id_number": number if reveal else mask_id(number),
                "sex": result.sex,
                "birth": (str(result.birth) if reveal else mask_birth(result.birth))
                if result.birth
                else None,
                "similarity": result.similarity,
            }
        )
    return Report(
        batch_id=batch.id,
        source=batch.source,
        provider=batch.provider,
        kind=batch.kind.value,
        state=batch.state.value,
        total_rows=batch.total_rows,
        jobs=jobs,
        counts=counts,
        terminal=terminal,
        attempts=int(attempts),
        billable_calls=int(billable),
        retried_jobs=int(retried or 0),
        warnings=dict(warnings.most_common()),
        local_check_failures=dict(local.most_common()),
        claim_mismatches=dict(claims.most_common()),
        provider_codes={str(k): int(n) for k, n in codes.items()},
        rejected=job_rows(JobStatus.REJECTED),
        failed=job_rows(JobStatus.FAILED),
        samples=samples,
        reused=int(reused or 0),
        in_doubt_calls=int(in_doubt or 0),
        finished_at=batch.finished_at.isoformat() if batch.finished_at else None,
        drift=_drift_section(session, batch_id, limit),
    )


def _drift_section(session: Session, batch_id: int, limit: int) -> dict[str, Any] | None:
    from db.drift import drift
    from db.reruns import parent_of

    parent = parent_of(session, batch_id)
    return None if parent is None else drift(session, batch_id, parent, limit=limit).as_dict()


def _ref(ref: str | None) -> str | None:
    """A reference as shown: an ID number inside it masked (a key or metadata may carry one)."""
    return scrub(ref) if ref else ref
