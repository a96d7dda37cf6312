"""The job lifecycle in SQL: claim under a lease, record attempts and answers, release.

Every write after the claim goes through ``release`` (or a statement with the same
``WHERE``): it changes the job only while this worker still holds its lease, so a
worker whose lease expired can never overwrite the outcome of the one that took over.

Statements are built once (``functools.cache``) and executed on the session's own
connection (``core``): building a Core statement and its cache key, then executing it,
took ~150 µs; executing a prebuilt one with new parameters ~20 µs (an ad-hoc timing on
in-memory SQLite). A job runs about seven of them, on a CPU-bound host.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Delete,
    Insert,
    Row,
    Select,
    Update,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from db import prebuilt
from db.models import Attempt, Base, Batch, Job, JobWarning, Result, SideAnswer, utcnow
from idbatch.domain import AttemptOutcome, BatchKind, BatchState, JobStatus, Verdict, WarningSource

# A transaction of the hot path: an ORM session, or a bare connection (db.session.connection_scope).
Tx = Session | Connection

CLAIMABLE = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RETRY_WAIT)


@dataclass(frozen=True)
class Claim:
    """A job this worker holds the lease on, with what the call needs."""

    job_id: int
    batch_id: int
    attempt: int  # the retry budget spent, this one included (given back when not the job's fault)
    front_image: str | None
    back_image: str | None
    provider: str
    config: dict[str, object]
    source: str
    rerun: bool = False  # the batch asks to call again, not to reuse earlier answers
    claimed_name_enc: bytes | None = None
    claimed_id_enc: bytes | None = None
    row_number: int | None = None
    line_number: int | None = None
    seq: int = 1  # this claim's number, never reused: attempt rows are numbered by it
    kind: str = "backfill"  # the batch's kind, a metrics label (read once per batch, no query)
    accounts: tuple[str, ...] = ()  # the only accounts it may be called on (its tenant's); empty: any


@dataclass(frozen=True)
class _BatchFacts:
    provider: str
    config: dict[str, object]
    source: str
    rerun: bool
    kind: str = "backfill"
    accounts: tuple[str, ...] = ()


# Provider, config, source and kind never change after a batch is created (its *state*
# does, and claim() reads that fresh), so each worker process reads them once per batch.
# Keyed by database too: ids restart in every database a process may talk to (tests).
_batch_facts: dict[tuple[str, int], _BatchFacts] = {}


def _facts(session: Tx, batch_id: int) -> _BatchFacts:
    bind = session.engine if isinstance(session, Connection) else session.get_bind()
    key = (str(bind.engine.url), batch_id)
    facts = _batch_facts.get(key)
    if facts is None:
        row = session.execute(
            select(Batch.provider, Batch.provider_config, Batch.source, Batch.kind, Batch.accounts).where(
                Batch.id == batch_id
            )
        ).one()
        facts = _BatchFacts(
            row.provider,
            dict(row.provider_config or {}),
            row.source,
            row.kind == BatchKind.RERUN,
            str(BatchKind(row.kind).value),
            tuple(row.accounts or ()),
        )
        if len(_batch_facts) > 10_000:
            _batch_facts.clear()
        _batch_facts[key] = facts
    return facts


def core(session: Tx) -> Connection:
    """The session's connection, for Core statements on the hot path.

    ``Session.execute`` of an ORM-enabled UPDATE or INSERT goes through the ORM's bulk
    machinery (identity-map synchronization, unit of work) that these writes never need;
    the same statement on the session's own connection, in the same transaction, costs
    a fraction of the CPU. ``bench/quota.py`` is CPU-bound on a 2-core machine, so
    worker CPU per job is throughput. A bare connection (``connection_scope``) is itself.
    """
    return session if isinstance(session, Connection) else session.connection()


@cache
def claim_stmt(many: bool = False) -> Update:
    """The claim: one job (``job_id``), or every claimable one of ``job_ids`` (``db.claims``)."""
    now = bindparam("now", type_=Job.updated_at.type)
    claimable = or_(
        and_(Job.status.in_(CLAIMABLE), or_(Job.next_attempt_at.is_(None), Job.next_attempt_at <= now)),
        and_(Job.status == JobStatus.RUNNING, Job.lease_until < now),  # its worker died
    )
    batch_active = exists().where(Batch.id == Job.batch_id, Batch.state == BatchState.ACTIVE)
    return (
        update(Job)
        .where(
            Job.id.in_(bindparam("job_ids", expanding=True)) if many else Job.id == bindparam("job_id"),
            claimable,
            batch_active,
        )
        .values(
            status=JobStatus.RUNNING,
            lease_owner=bindparam("owner"),
            lease_until=bindparam("lease_until"),
            attempt_count=Job.attempt_count + 1,
            claim_seq=Job.claim_seq + 1,
            updated_at=now,
            content_key=None,  # set again right before the provider call
        )
        .returning(
            Job.id,
            Job.batch_id,
            Job.attempt_count,
            Job.front_image,
            Job.back_image,
            Job.claimed_name_enc,
            Job.claimed_id_enc,
            Job.row_number,
            Job.line_number,
            Job.claim_seq,
        )
    )


def _ours() -> tuple[ColumnElement[bool], ...]:
    """Our job, only while we still hold its lease."""
    return (
        Job.id == bindparam("job_id"),
        Job.status == JobStatus.RUNNING,
        Job.lease_owner == bindparam("owner"),
    )


@cache
def _release_stmt(columns: tuple[str, ...]) -> Update:
    values = {c: bindparam(f"v_{c}", type_=Job.__table__.c[c].type) for c in columns}
    return update(Job).where(*_ours()).values(lease_owner=None, lease_until=None, **values)


@cache
def _content_key_stmt() -> Update:
    # The lease is renewed here, right before the call: a job claimed with its group
    # (db.claims) may have waited for the jobs before it, and the call must be covered.
    until = bindparam("lease_until", type_=Job.lease_until.type)
    return update(Job).where(*_ours()).values(content_key=bindparam("key"), lease_until=until)


@cache
def _stored_verdict_stmt() -> Select[tuple[Verdict]]:
    return select(Result.verdict).where(Result.job_id == bindparam("job_id"))


@cache
def reusable_answer(job: Any, same_batch: bool, batch_param: str = "batch_id") -> Select[tuple[int]]:
    """Another job's (``job``: the model or an alias) latest answer for the key; ``db.content_keys`` too."""
    stmt = (
        select(Result.id)
        .join(job, job.id == Result.job_id)
        .where(
            job.content_key == bindparam("key"),
            job.id != bindparam("job_id"),
            # rows from before 0004 have no answered_at: their created_at is as good
            func.coalesce(Result.answered_at, Result.created_at)
            >= bindparam("since", type_=Result.created_at.type),
        )
        .order_by(Result.id.desc())
        .limit(1)
    )
    return stmt.where(job.batch_id == bindparam(batch_param)) if same_batch else stmt


@cache
def _clear_in_flight_stmt() -> Delete:
    return delete(Attempt).where(
        Attempt.job_id == bindparam("job_id"),
        Attempt.number == bindparam("number"),
        Attempt.outcome == AttemptOutcome.IN_FLIGHT,
    )


@cache
def _in_doubt_stmt() -> Update:
    return (
        update(Attempt)
        .where(
            Attempt.job_id == bindparam("b_job_id"),
            Attempt.number <= bindparam("b_number"),
            Attempt.outcome == AttemptOutcome.IN_FLIGHT,
        )
        .values(outcome=AttemptOutcome.IN_DOUBT, error="the worker stopped during the call")
    )


@cache
def _insert_stmt(model: type[Base]) -> Insert:
    return insert(model)


def claim(session: Tx, job_id: int, owner: str, lease_s: int) -> Claim | None:
    """Take the job if it is claimable and its batch active; None otherwise."""
    now = utcnow()
    params = {
        "now": now,
        "job_id": job_id,
        "owner": owner,
        "lease_until": now + dt.timedelta(seconds=lease_s),
    }
    row = prebuilt.execute(core(session), claim_stmt(), params).one_or_none()
    return None if row is None else claimed_row(session, job_id, row)


def claimed_row(session: Tx, job_id: int, row: Row[Any]) -> Claim:
    """The ``Claim`` for one row the claim statement returned (``claim``, ``db.claims``)."""
    if row.claim_seq > 1:
        # An earlier claim's calls still in flight were made by a worker that is gone.
        mark_in_doubt(session, job_id, row.claim_seq - 1)
    facts = _facts(session, row.batch_id)
    return Claim(
        job_id,
        row.batch_id,
        row.attempt_count,
        row.front_image,
        row.back_image,
        facts.provider,
        facts.config,
        facts.source,
        rerun=facts.rerun,
        claimed_name_enc=row.claimed_name_enc,
        claimed_id_enc=row.claimed_id_enc,
        row_number=row.row_number,
        line_number=row.line_number,
        seq=row.claim_seq,
        kind=facts.kind,
        accounts=facts.accounts,
    )


def release(session: Tx, claimed: Claim, owner: str, **values: object) -> bool:
    """Update our job (and drop the lease) only while we still hold its lease."""
    values.setdefault("updated_at", utcnow())
    params = {"job_id": claimed.job_id, "owner": owner, **{f"v_{k}": v for k, v in values.items()}}
    result = prebuilt.execute(core(session), _release_stmt(tuple(sorted(values))), params)
    return bool(result.rowcount)


def hold_content_key(session: Tx, claimed: Claim, owner: str, key: str, lease_s: float) -> bool:
    """Mark what we are about to pay for, and renew the lease for the call.

    A partial unique index lets one running job hold a key: raises IntegrityError when
    another running job holds the same one. False: the job is no longer ours (our lease
    expired and another worker claimed it), so we must not call.
    """
    lease_until = utcnow() + dt.timedelta(seconds=lease_s)
    params = {"job_id": claimed.job_id, "owner": owner, "key": key, "lease_until": lease_until}
    return bool(prebuilt.execute(core(session), _content_key_stmt(), params).rowcount)


def stored_verdict(session: Tx, job_id: int) -> Verdict | None:
    """The verdict already recorded for this job (an earlier worker, an ambiguous commit)."""
    return prebuilt.execute(core(session), _stored_verdict_stmt(), {"job_id": job_id}).scalar()


def reusable_result(session: Tx, claimed: Claim, key: str, since: dt.datetime) -> Result | None:
    """The latest paid answer for the same content key answered since ``since``.

    A rerun reuses only its own batch's answers (its purpose is to call again). The (rare)
    answer is loaded through an ORM session joined to this transaction (``orm_session``).
    """
    params = {"key": key, "job_id": claimed.job_id, "batch_id": claimed.batch_id, "since": since}
    found = reusable_answer(Job, claimed.rerun)
    result_id = prebuilt.execute(core(session), found, params).scalar()  # mostly None
    return None if result_id is None else orm_session(session).get(Result, result_id)


def orm_session(session: Tx) -> Session:
    """An ORM session inside ``session``'s transaction (itself if it is one already).

    ``Session(bind=conn)`` on a connection already in a transaction joins it: it never
    commits or rolls back that transaction (SQLAlchemy's ``join_transaction_mode``
    default), and the objects it loads stay usable after the transaction ends.
    """
    if isinstance(session, Connection):
        return Session(bind=session, expire_on_commit=False)
    return session


def provider_warnings(session: Tx, job_id: int) -> list[JobWarning]:
    """The warnings the provider gave for ``job_id`` (ours are recomputed on reuse)."""
    return list(
        orm_session(session)
        .scalars(
            select(JobWarning).where(JobWarning.job_id == job_id, JobWarning.source == WarningSource.PROVIDER)
        )
        .all()
    )


def copy_answer(
    session: Tx, source: Result, job_id: int, verdict: Verdict, warnings: list[dict[str, object]]
) -> int:
    """Give ``job_id`` a copy of ``source`` with its own verdict and warnings.

    The copy keeps the original ``answered_at``; returns the job that paid for the answer.
    """
    origin = session.scalar(select(Job.reused_from).where(Job.id == source.job_id)) or source.job_id
    skip = {"id", "job_id", "created_at", "verdict"}
    copied = {c.key: getattr(source, c.key) for c in Result.__table__.columns if c.key not in skip}
    copied["provider_verdict"] = source.provider_verdict or source.verdict
    copied["answered_at"] = source.answered_at or source.created_at
    insert_rows(session, Result, [{"job_id": job_id, "verdict": verdict, **copied}])
    insert_rows(session, JobWarning, warnings)
    return origin


def begin_calls(session: Tx, rows: list[dict[str, object]]) -> None:
    """The write-ahead attempt rows (``in_flight``), committed before the call starts."""
    insert_rows(session, Attempt, rows)


def clear_in_flight(session: Tx, job_id: int, number: int) -> None:
    """Drop this attempt's write-ahead rows; the caller inserts what really happened."""
    prebuilt.execute(core(session), _clear_in_flight_stmt(), {"job_id": job_id, "number": number})


def mark_in_doubt(session: Tx, job_id: int, up_to_number: int) -> None:
    """Calls still ``in_flight`` in attempts up to ``up_to_number`` may have been billed."""
    prebuilt.execute(core(session), _in_doubt_stmt(), {"b_job_id": job_id, "b_number": up_to_number})


def insert_rows(session: Tx, model: type[Base], rows: list[dict[str, object]]) -> None:
    """INSERT ``rows`` (executemany); nothing at all for none, never a row of defaults."""
    if rows:
        prebuilt.execute(core(session), _insert_stmt(model), rows)


def record_attempts(session: Tx, rows: list[dict[str, object]]) -> None:
    insert_rows(session, Attempt, rows)


def record_result(session: Tx, row: dict[str, object], warnings: list[dict[str, object]]) -> None:
    insert_rows(session, Result, [row])
    insert_rows(session, JobWarning, warnings)


def store_side_answers(session: Tx, job_id: int, seq: int, payloads: dict[str, bytes]) -> None:
    """Keep the sides answered before another side failed (encrypted by the caller)."""
    insert_rows(
        session,
        SideAnswer,
        [
            {"job_id": job_id, "side": side, "claim_seq": seq, "payload_enc": p}
            for side, p in payloads.items()
        ],
    )


def side_answers(session: Tx, job_id: int) -> dict[str, bytes]:
    """The job's stored side answers (encrypted), by side."""
    rows = session.execute(select(SideAnswer.side, SideAnswer.payload_enc).where(SideAnswer.job_id == job_id))
    return {str(side): bytes(payload) for side, payload in rows.tuples()}
