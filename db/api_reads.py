"""What the HTTP API reads: a tenant's jobs and batches, masked, always filtered by tenant.

Every function takes the caller's ``tenant_id`` and joins through ``batch.tenant_id``:
another tenant's id is simply not found (the API answers 404, never 403, so ids cannot
be probed). PII is masked unless ``reveal`` (a scope, checked by the caller).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.batches import BatchControlError, cancel_jobs, set_state
from db.models import Attempt, Batch, Job, JobWarning, Result
from idbatch.domain import TERMINAL_STATUSES, BatchState
from idbatch.pii import AD_ADDRESS, AD_ID_NUMBER, AD_NAME, mask_address, mask_birth, mask_id, mask_name, vault


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def result_view(result: Result | None, reveal: bool) -> dict[str, Any] | None:
    """The normalized answer as the API shows it: masked unless ``reveal``."""
    if result is None:
        return None
    v = vault()
    name = v.decrypt(result.name_enc, AD_NAME)
    number = v.decrypt(result.id_number_enc, AD_ID_NUMBER)
    address = v.decrypt(result.address_enc, AD_ADDRESS)
    return {
        "verdict": result.verdict.value,
        "name": name if reveal else mask_name(name),
        "id_number": number if reveal else mask_id(number),
        "birth": _iso(result.birth) if reveal else mask_birth(result.birth),
        "address": address if reveal else mask_address(address),
        "sex": result.sex,
        "nation": result.nation,
        "authority": result.authority,
        "valid_from": _iso(result.valid_from),
        "valid_to": _iso(result.valid_to),
        "valid_long_term": result.valid_long_term,
        "similarity": result.similarity,
        "description": result.description,
    }


def _job_of(session: Session, tenant_id: int, job_id: int) -> Job | None:
    return session.scalar(
        select(Job)
        .join(Batch, Batch.id == Job.batch_id)
        .where(Job.id == job_id, Batch.tenant_id == tenant_id)
    )


def job_view(session: Session, tenant_id: int, job_id: int, *, reveal: bool = False) -> dict[str, Any] | None:
    """A job of this tenant with its masked result, warnings and attempts summary; else None."""
    job = _job_of(session, tenant_id, job_id)
    if job is None:
        return None
    result = session.scalar(select(Result).where(Result.job_id == job.id))
    warnings = session.scalars(select(JobWarning.code).where(JobWarning.job_id == job.id)).all()
    attempts = session.execute(
        select(func.count(), func.count().filter(Attempt.billable.is_(True))).where(Attempt.job_id == job.id)
    ).one()
    return {
        "id": job.id,
        "batch_id": job.batch_id,
        "external_ref": job.external_ref,
        "status": job.status.value,
        "terminal": job.status in TERMINAL_STATUSES,
        "reason": job.last_error if job.status in TERMINAL_STATUSES else None,
        "result": result_view(result, reveal),
        "warnings": sorted(set(warnings)),
        "attempts": {"calls": int(attempts[0]), "billable": int(attempts[1]), "retries": job.attempt_count},
        "reused": job.reused_from is not None,
        "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at),
    }


def job_terminal(session: Session, tenant_id: int, job_id: int) -> bool | None:
    """Whether the job is terminal (long-poll check), None if not this tenant's."""
    status = session.scalar(
        select(Job.status)
        .join(Batch, Batch.id == Job.batch_id)
        .where(Job.id == job_id, Batch.tenant_id == tenant_id)
    )
    return None if status is None else status in TERMINAL_STATUSES


def _batch_of(session: Session, tenant_id: int, batch_id: int) -> Batch | None:
    return session.scalar(select(Batch).where(Batch.id == batch_id, Batch.tenant_id == tenant_id))


def batch_view(session: Session, tenant_id: int, batch_id: int) -> dict[str, Any] | None:
    """Counts by status and progress of a batch of this tenant; else None."""
    batch = _batch_of(session, tenant_id, batch_id)
    if batch is None:
        return None
    counts = {
        str(status.value): int(n)
        for status, n in session.execute(
            select(Job.status, func.count()).where(Job.batch_id == batch_id).group_by(Job.status)
        )
    }
    jobs = sum(counts.values())
    terminal = sum(n for s, n in counts.items() if s in {t.value for t in TERMINAL_STATUSES})
    return {
        "id": batch.id,
        "state": batch.state.value,
        "provider": batch.provider,
        "total_rows": batch.total_rows,
        "ingest_complete": batch.ingest_complete,
        "counts": counts,
        "jobs": jobs,
        "terminal": terminal,
        "progress": (terminal / jobs) if jobs else 1.0,
        "finished": batch.finished_at is not None,
        "created_at": _iso(batch.created_at),
        "finished_at": _iso(batch.finished_at),
    }


def batch_results(
    session: Session, tenant_id: int, batch_id: int, *, after: int, limit: int, reveal: bool = False
) -> tuple[list[dict[str, Any]], int | None] | None:
    """One page of a batch's jobs (by id, after the cursor ``after``) and the next cursor."""
    if _batch_of(session, tenant_id, batch_id) is None:
        return None
    rows = session.execute(
        select(Job, Result)
        .outerjoin(Result, Result.job_id == Job.id)
        .where(Job.batch_id == batch_id, Job.id > after)
        .order_by(Job.id)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {
            "id": job.id,
            "row": job.row_number,
            "external_ref": job.external_ref,
            "status": job.status.value,
            "reason": job.last_error if job.status in TERMINAL_STATUSES else None,
            "result": result_view(result, reveal),
        }
        for job, result in rows
    ]
    return items, (rows[-1][0].id if more and rows else None)


def cancel_batch(session: Session, tenant_id: int, batch_id: int) -> int | None:
    """Cancel a batch of this tenant (its open jobs close); None if not found."""
    if _batch_of(session, tenant_id, batch_id) is None:
        return None
    try:
        set_state(session, batch_id, BatchState.CANCELLED, allowed=(BatchState.ACTIVE, BatchState.PAUSED))
    except BatchControlError:
        return 0
    return cancel_jobs(session, batch_id)


def single_job_of_batch(session: Session, batch_id: int) -> int | None:
    """The job id of a one-card batch (a single verification)."""
    return session.scalar(select(Job.id).where(Job.batch_id == batch_id).order_by(Job.id).limit(1))
