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

    Core statements on one pooled connection: three round trips and the commit (four with
    a callback), and none of the ORM's flush bookkeeping (a third of this function's CPU).
    ``accounts``: the tenant's accounts for ``provider`` (empty: any), fixed on the batch.
    """
    now = utcnow()
    with engine().begin() as conn:
        batch_id = int(
            conn.execute(
                _INSERT_BATCH,
                {
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
                },
            ).scalar_one()
        )
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
    on_commit([job_id])
    return batch_id, job_id, response
