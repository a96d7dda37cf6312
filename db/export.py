"""The result writer's rows: one per job of a batch, streamed from a server-side cursor.

One statement joins each job with its result, its attempts (counted per job: calls,
billable, in doubt, provider codes) and its warnings, and, for a rerun, the same card
in the parent batch (drift: the status it had then). It is read with
``stream_results`` + ``yield_per``: Postgres hands the rows over in pages through a
named cursor, so memory holds one page whatever the batch size (``bench/export.py``
measures 1,000,000 jobs). Rows are tuples in ``COLUMNS`` order; recognized PII is
decrypted and masked here, unless ``reveal`` (the caller audits that first).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, select
from sqlalchemy.orm import Session, aliased

from db.models import Attempt, Job, JobWarning, Result
from db.models_rerun import RerunLink
from idbatch.domain import TERMINAL_STATUSES, AttemptOutcome, JobStatus
from idbatch.pii import AD_ADDRESS, AD_ID_NUMBER, AD_NAME, mask_address, mask_birth, mask_id, mask_name, vault

PAGE = 5000
DONE = TERMINAL_STATUSES - {JobStatus.CANCELLED}

COLUMNS = (
    "job_id",
    "row_number",
    "external_ref",
    "status",
    "verdict",
    "warnings",
    "provider_codes",
    "attempts",
    "billable_calls",
    "in_doubt_calls",
    "reused_from",
    "name",
    "id_number",
    "sex",
    "birth",
    "address",
    "authority",
    "valid_from",
    "valid_to",
    "similarity",
    "answered_at",
    "error",
    "drift",
)


def _statement(session: Session, batch_id: int) -> Any:
    in_batch = select(Job.id).where(Job.batch_id == batch_id).scalar_subquery()
    calls = (
        select(
            Attempt.job_id.label("job_id"),
            func.count().label("n"),
            func.sum(cast(Attempt.billable, Integer)).label("billable"),
            func.sum(case((Attempt.outcome == AttemptOutcome.IN_DOUBT, 1), else_=0)).label("in_doubt"),
            func.aggregate_strings(Attempt.provider_code, ";").label("codes"),
        )
        .where(Attempt.job_id.in_(in_batch))
        .group_by(Attempt.job_id)
        .subquery("calls")
    )
    warns = (
        select(JobWarning.job_id.label("job_id"), func.aggregate_strings(JobWarning.code, ";").label("codes"))
        .where(JobWarning.job_id.in_(in_batch))
        .group_by(JobWarning.job_id)
        .subquery("warns")
    )
    parent_id = session.scalar(select(RerunLink.parent_id).where(RerunLink.batch_id == batch_id))
    before = aliased(Job, name="before")
    return (
        select(
            Job.id,
            Job.row_number,
            Job.external_ref,
            Job.status,
            Result.verdict,
            warns.c.codes,
            calls.c.codes,
            func.coalesce(calls.c.n, 0),
            func.coalesce(calls.c.billable, 0),
            func.coalesce(calls.c.in_doubt, 0),
            Job.reused_from,
            Result.name_enc,
            Result.id_number_enc,
            Result.sex,
            Result.birth,
            Result.address_enc,
            Result.authority,
            Result.valid_from,
            Result.valid_to,
            Result.similarity,
            Result.answered_at,
            Job.last_error,
            before.status,
        )
        .select_from(Job)
        .outerjoin(Result, Result.job_id == Job.id)
        .outerjoin(calls, calls.c.job_id == Job.id)
        .outerjoin(warns, warns.c.job_id == Job.id)
        .outerjoin(before, and_(before.batch_id == parent_id, before.row_number == Job.row_number))
        .where(Job.batch_id == batch_id)
        .order_by(Job.id)
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def rows(session: Session, batch_id: int, *, reveal: bool = False) -> Iterator[tuple[Any, ...]]:
    """Every job of ``batch_id`` as a ``COLUMNS`` tuple, in bounded memory."""
    v = vault()
    decrypt = v.decrypt
    stmt = _statement(session, batch_id).execution_options(stream_results=True, yield_per=PAGE)
    for r in session.execute(stmt).tuples():
        (
            job_id, row_number, ref, status, verdict, warn_codes, codes, attempts, billable, in_doubt,
            reused, name_enc, id_enc, sex, birth, addr_enc, authority, valid_from, valid_to, similarity,
            answered_at, error, before,
        ) = r  # fmt: skip
        name = decrypt(name_enc, AD_NAME) if name_enc is not None else None
        number = decrypt(id_enc, AD_ID_NUMBER) if id_enc is not None else None
        address = decrypt(addr_enc, AD_ADDRESS) if addr_enc is not None else None
        if not reveal:
            name = mask_name(name) if name else None
            number = mask_id(number) if number else None
            address = mask_address(address) if address else None
            birth = mask_birth(birth)
        # drift: a card verified in both batches whose outcome moved (a held or open card
        # has not been verified again yet: no drift to tell)
        drift = f"{before} -> {status}" if before != status and before in DONE and status in DONE else None
        yield (
            job_id,
            row_number,
            ref,
            str(status),
            _text(verdict),
            warn_codes,
            codes,
            int(attempts),
            int(billable),
            int(in_doubt),
            reused,
            name,
            number,
            sex,
            _text(birth),
            address,
            authority,
            _text(valid_from),
            _text(valid_to),
            similarity,
            answered_at.isoformat() if answered_at is not None else None,
            error,
            drift,
        )
