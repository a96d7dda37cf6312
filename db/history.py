"""Per-card history: every verification of one card across batches, masked (issue 15).

A card is found by its ``external_ref`` (indexed by migration 0008) or by an ID number,
through the keyed hashes already stored: ``result.id_number_hash`` (what the provider
read) and ``job.claimed_id_hash`` (what the manifest claimed). The number itself is
never stored or searched in clear.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from db.models import Attempt, Batch, Job, JobWarning, Result
from idbatch.domain import JobStatus
from idbatch.idnumber import normalize
from idbatch.pii import AD_ID_NUMBER, AD_NAME, mask_id, mask_name, vault


def history(
    session: Session, *, ref: str | None = None, id_number: str | None = None
) -> list[dict[str, Any]]:
    """Oldest first: batch, kind, status, verdict, warnings, answered when, calls billed."""
    stmt = (
        select(Job, Batch.kind, Batch.provider, Result)
        .join(Batch, Batch.id == Job.batch_id)
        .outerjoin(Result, Result.job_id == Job.id)
        .order_by(Job.created_at, Job.id)
    )
    if ref is not None:
        stmt = stmt.where(Job.external_ref == ref)
    else:
        digest = vault().lookup_hash(normalize(id_number or ""))
        stmt = stmt.where(or_(Result.id_number_hash == digest, Job.claimed_id_hash == digest))
    v = vault()
    out = []
    for job, kind, provider, result in session.execute(stmt).tuples():
        codes = sorted(session.scalars(select(JobWarning.code).where(JobWarning.job_id == job.id)))
        billable = session.scalar(
            select(Attempt.id).where(Attempt.job_id == job.id, Attempt.billable.is_(True)).limit(1)
        )
        out.append(
            {
                "batch": job.batch_id,
                "kind": str(kind),
                "provider": provider,
                "job": job.id,
                "ref": job.external_ref,
                "status": JobStatus(job.status).value,
                "verdict": None if result is None else str(result.verdict),
                "warnings": codes,
                "answered_at": None
                if result is None or result.answered_at is None
                else _utc(result.answered_at).isoformat(),
                "reused_from": job.reused_from,
                "billed": billable is not None,
                "name": None if result is None else mask_name(v.decrypt(result.name_enc, AD_NAME)),
                "id_number": None
                if result is None
                else mask_id(v.decrypt(result.id_number_enc, AD_ID_NUMBER)),
                "valid_to": None if result is None or result.valid_to is None else str(result.valid_to),
                "reason": job.last_error if job.status == JobStatus.REJECTED else None,
            }
        )
    return out


def _utc(moment: dt.datetime) -> dt.datetime:
    """SQLite gives back naive datetimes; they were written in UTC (as ``idbatch export`` says)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
