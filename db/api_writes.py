"""The single card's write over the HTTP API: batch, job, callback row and key answer at once.

Apart from ``db.tenants`` (tenants, keys and idempotency records) because it is the hot
path's one write, built for speed: prebuilt Core statements on one pooled connection.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, insert, text, update

from db.models import Batch, Job, utcnow
from db.models_api import BatchCallback, IdempotencyRecord
from db.session import engine
from idbatch.domain import BatchState

# Built once: Core statements on a bare connection (no ORM unit of work, no Session), so
# SQLAlchemy's compiled cache answers every request after the first.
_INSERT_BATCH = insert(Batch).returning(Batch.id)
_INSERT_JOB = insert(Job).returning(Job.id)
_INSERT_CALLBACK = insert(BatchCallback)
_RECORD_DONE = (
    update(IdempotencyRecord)
    .where(IdempotencyRecord.id == bindparam("record_id"))
    .values(state="done", status_code=202, response=bindparam("answer"))
)


@dataclass(frozen=True)
class KeyClaim:
    """An Idempotency-Key to take in the same transaction as the write it answers for."""

    tenant_id: int
    key: str
    fingerprint: str
    ttl_s: float


class KeyTaken(Exception):
    """The key already has a record: the write was rolled back; ``claim_idempotency_key`` says why."""


# The key's record written already done, inside the card's own transaction. On a conflict
# (the key exists, or a twin's uncommitted insert holds it: Postgres waits for that one to
# commit) nothing is inserted and the caller rolls its write back.
_CLAIM_DONE = text(
    "INSERT INTO idempotency_record "
    "(tenant_id, key, fingerprint, state, status_code, response, created_at, expires_at) "
    "VALUES (:tenant_id, :key, :fingerprint, 'done', :status_code, :response, :created_at, :expires_at) "
    "ON CONFLICT (tenant_id, key) DO NOTHING RETURNING id"
).bindparams(
    bindparam("response", type_=IdempotencyRecord.__table__.c.response.type),
    bindparam("created_at", type_=IdempotencyRecord.__table__.c.created_at.type),
    bindparam("expires_at", type_=IdempotencyRecord.__table__.c.expires_at.type),
)


def claim_done(conn: Connection, claim: KeyClaim, status_code: int, response: dict[str, Any]) -> None:
    """Take ``claim``'s key with its answer on ``conn`` (inside the write's transaction).

    Raises ``KeyTaken`` when the key has a record already, so the caller's transaction rolls
    back; the key's record (replay, 409, 422) is then read by ``db.tenants.claim_idempotency_key``.
    """
    now = utcnow()
    new_id = conn.execute(
        _CLAIM_DONE,
        {
            "tenant_id": claim.tenant_id,
            "key": claim.key,
            "fingerprint": claim.fingerprint,
            "status_code": status_code,
            "response": response,
            "created_at": now,
            "expires_at": now + dt.timedelta(seconds=claim.ttl_s),
        },
    ).scalar()
    if new_id is None:
        raise KeyTaken(claim.key)


# -- one statement per single card (Postgres) --------------------------------------------
# Batch, job and the key's answered record as data-modifying CTEs of ONE statement: the
# job takes the batch's id and the record the job's (its stored answer is built by
# Postgres, the same object ``producers.api.service.single_answer`` builds). Three
# executes through SQLAlchemy and psycopg were ~20 % of a single card's CPU; one is a
# third of that. On a conflict the record CTE inserts nothing, the statement returns no
# record id, and the caller rolls the batch and job back (``KeyTaken``), as before.
_BATCH_COLUMNS = (
    "source", "kind", "state", "provider", "provider_config", "total_rows",
    "ingest_complete", "created_at", "tenant_id", "accounts",
)  # fmt: skip
_ONE_STATEMENT: dict[tuple[str, ...], Any] = {}


def _job_defaults(given: tuple[str, ...]) -> dict[str, Any]:
    """The job columns' Python-side defaults that ``insert(Job)`` would fill in (a text
    statement does not): scalars as they are, callables (``utcnow``) called now."""
    out: dict[str, Any] = {}
    for column in Job.__table__.columns:
        default = column.default
        if column.name in given or column.name == "batch_id" or default is None:
            continue
        arg: Any = getattr(default, "arg", None)
        out[column.name] = arg(None) if getattr(default, "is_callable", False) else arg
    return out


def _one_statement(job_columns: tuple[str, ...]) -> Any:
    """``INSERT batch; INSERT job; INSERT record ON CONFLICT DO NOTHING`` as one statement.

    Text, not Core: SQLAlchemy 2.0 does not cache the compiled form of its Postgres
    ``insert`` (``on_conflict_do_nothing``), so as a Core CTE it was compiled again on
    every request (11 % of the samples, measured); a ``text()`` with typed bind
    parameters is compiled once and its values still go through the columns' types.
    """
    stmt = _ONE_STATEMENT.get(job_columns)
    if stmt is not None:
        return stmt
    unknown = set(job_columns) - set(Job.__table__.c.keys())
    if unknown:  # names come from the row builder, never from a request; checked anyway
        raise ValueError(f"not job columns: {sorted(unknown)}")
    columns = (*job_columns, *_job_defaults(job_columns))
    binds = [bindparam(f"b_{n}", type_=Batch.__table__.c[n].type) for n in _BATCH_COLUMNS]
    binds += [bindparam(f"j_{n}", type_=Job.__table__.c[n].type) for n in columns]
    record = IdempotencyRecord.__table__.c
    binds += [
        bindparam(f"k_{n}", type_=record[n].type)
        for n in ("tenant_id", "key", "fingerprint", "created_at", "expires_at")
    ]
    # Identifiers are the tables' own column names (checked above); every value is a bind.
    sql = (
        f"WITH b AS (INSERT INTO batch ({', '.join(_BATCH_COLUMNS)}) "  # noqa: S608
        f"VALUES ({', '.join(':b_' + n for n in _BATCH_COLUMNS)}) RETURNING id), "
        f"j AS (INSERT INTO job (batch_id, {', '.join(columns)}) "
        f"VALUES ((SELECT id FROM b), {', '.join(':j_' + n for n in columns)}) RETURNING id, batch_id), "
        "k AS (INSERT INTO idempotency_record "
        "(tenant_id, key, fingerprint, state, status_code, response, created_at, expires_at) "
        "VALUES (:k_tenant_id, :k_key, :k_fingerprint, 'done', 202, "
        "(SELECT json_build_object('id', j.id, 'batch_id', j.batch_id, 'status', 'queued') FROM j), "
        ":k_created_at, :k_expires_at) ON CONFLICT (tenant_id, key) DO NOTHING RETURNING id) "
        "SELECT j.batch_id, j.id, (SELECT id FROM k) AS record_id FROM j"
    )
    stmt = text(sql).bindparams(*binds)
    _ONE_STATEMENT[job_columns] = stmt
    return stmt


def _write_one_statement(
    conn: Connection, batch: dict[str, Any], values: dict[str, Any], claim: KeyClaim, now: dt.datetime
) -> tuple[int, int]:
    """The batch, job and key record of one card; ``KeyTaken`` if the key has a record."""
    job = {k: v for k, v in values.items() if k != "batch_id"}
    params = {f"b_{k}": batch[k] for k in _BATCH_COLUMNS}
    params |= {f"j_{k}": v for k, v in job.items()}
    params |= {f"j_{k}": v for k, v in _job_defaults(tuple(job)).items()}
    params |= {
        "k_tenant_id": claim.tenant_id,
        "k_key": claim.key,
        "k_fingerprint": claim.fingerprint,
        "k_created_at": now,
        "k_expires_at": now + dt.timedelta(seconds=claim.ttl_s),
    }
    row = conn.execute(_one_statement(tuple(job)), params).one()
    if row.record_id is None:
        raise KeyTaken(claim.key)
    return int(row.batch_id), int(row.id)


def ingest_single(
    tenant_id: int,
    *,
    source: str,
    kind: Any,
    provider: str,
    config: dict[str, Any],
    values: dict[str, Any],
    callback_url: str | None,
    event: str,
    record_id: int | None,
    answer: Any,
    on_commit: Any,
    claim: KeyClaim | None = None,
    accounts: tuple[str, ...] = (),
) -> tuple[int, int, dict[str, Any]]:
    """One card's batch, job, callback row and idempotency answer in ONE transaction.

    The job row is the ingest's own (``values`` from ``producers.submit``'s row builder and
    storable-row check, inserted as one ``INSERT .. RETURNING``); writing it with the
    batch and the stored answer means a crash can never leave a job whose Idempotency-Key
    still says "in progress" (a retry would make a second job) nor a key that answers for
    a job that was rolled back. ``answer(batch_id, job_id)`` builds the response stored for
    replays; ``on_commit([job_id])`` runs after the commit (never if it rolled back).

    With ``claim`` instead of ``record_id`` the Idempotency-Key itself is taken in this
    transaction (its record inserted already answered): one transaction per single card
    instead of two. A key that exists (or a twin's insert in flight, which Postgres waits
    for) raises ``KeyTaken`` after rolling everything back.

    Core statements on one pooled connection, none of the ORM's flush bookkeeping (a third
    of this function's CPU). With ``claim``, no callback and Postgres: ONE statement and
    the commit (``_one_statement``; ``answer`` must then be ``single_answer``'s shape,
    which that statement builds in SQL). Otherwise three round trips and the commit
    (four with a callback).
    ``accounts``: the tenant's accounts for ``provider`` (empty: any), fixed on the batch.
    """
    now = utcnow()
    batch = {
        "source": source,
        "kind": kind,
        "state": BatchState.ACTIVE,
        "provider": provider,
        "provider_config": config,
        "total_rows": 1,
        "ingest_complete": True,
        "created_at": now,
        "tenant_id": tenant_id,
        "accounts": list(accounts) or None,
    }
    with engine().begin() as conn:
        if claim is not None and not callback_url and conn.dialect.name == "postgresql":
            # The hot path: one statement, then the commit. The stored answer was built
            # by Postgres from the same two ids (``_one_statement``).
            batch_id, job_id = _write_one_statement(conn, batch, values, claim, now)
            response = answer(batch_id, job_id)
        else:
            batch_id, job_id, response = _write_statements(
                conn, batch, values, callback_url, event, record_id, claim, answer
            )
    on_commit([job_id])
    return batch_id, job_id, response


def _write_statements(
    conn: Connection,
    batch: dict[str, Any],
    values: dict[str, Any],
    callback_url: str | None,
    event: str,
    record_id: int | None,
    claim: KeyClaim | None,
    answer: Any,
) -> tuple[int, int, dict[str, Any]]:
    """One statement per row: a callback row, an existing key record, or not Postgres."""
    tenant_id = batch["tenant_id"]
    batch_id = int(conn.execute(_INSERT_BATCH, batch).scalar_one())
    if callback_url:
        conn.execute(
            _INSERT_CALLBACK,
            {
                "batch_id": batch_id,
                "tenant_id": tenant_id,
                "url": callback_url,
                "event": event,
                "state": "pending",
                "progress_sent": 0,
            },
        )
    job_id = int(conn.execute(_INSERT_JOB, {**values, "batch_id": batch_id}).scalar_one())
    response: dict[str, Any] = answer(batch_id, job_id)
    if record_id is not None:
        conn.execute(_RECORD_DONE, {"record_id": record_id, "answer": response})
    elif claim is not None:
        claim_done(conn, claim, 202, response)
    return batch_id, job_id, response
