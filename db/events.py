"""The upload-event ledger's queries (``db.models_events.EventObject``).

Every function takes the caller's session: recording a poll is *one* transaction (new
ledger rows, the jobs they complete, the ledger rows pointing at those jobs), so a crash
leaves either all of it or none, and the SQS messages are deleted only after it commits.

Concurrency (several listener threads or processes): the sides of one card are
serialized by a transaction-scoped advisory lock on the card (Postgres), so a front and
its back committing at the same moment cannot both miss each other; the sweep takes
the same card locks before it reads a card's sides. Locks are taken in one order everywhere
(cards by hash, ledger rows, then the batch row last), so two transactions never wait on
each other in a cycle.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Protocol, cast

from sqlalchemy import bindparam, func, select, text, tuple_, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from db.models import Batch, Job, utcnow
from db.models_events import EventObject
from idbatch.domain import JobStatus


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_cards(session: Session, card_keys: Iterable[str]) -> None:
    """Hold every named card until commit (SQLite serializes writers anyway)."""
    keys = sorted(set(card_keys))
    if not keys or not _postgres(session):
        return
    session.execute(
        text(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, 19) AS h"
            " FROM unnest(CAST(:keys AS text[])) AS k ORDER BY h) s"
        ),
        {"keys": keys},
    )


def known_objects(session: Session, versions: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (url, etag) object versions the ledger already holds (a redelivered event)."""
    wanted = list(set(versions))
    if not wanted:
        return set()
    rows = session.execute(
        select(EventObject.url, EventObject.etag).where(tuple_(EventObject.url, EventObject.etag).in_(wanted))
    )
    return {(str(url), str(etag)) for url, etag in rows}


_LEDGER_COLUMNS = (
    ("batch_id", "bigint"),
    ("url", "text"),
    ("etag", "text"),
    ("size", "bigint"),
    ("card_key", "text"),
    ("side", "text"),
    ("external_ref", "text"),
    ("claimed_name_enc", "bytea"),
    ("claimed_id_enc", "bytea"),
    ("problem", "text"),
    ("seen_at", "timestamptz"),
)
# One statement text whatever the row count: arrays per column through unnest. A
# multi-VALUES insert (SQLAlchemy's insertmanyvalues) has a new text for every count,
# which psycopg parses again each time (~3 ms for a listener commit of 20 sides).
# (S608: both texts are built from the constants here and the model's column names)
_INSERT_LEDGER = text(
    f"INSERT INTO event_object ({', '.join(c for c, _ in _LEDGER_COLUMNS)}) "  # noqa: S608
    f"SELECT * FROM unnest({', '.join(f'CAST(:{c} AS {t}[])' for c, t in _LEDGER_COLUMNS)}) "
    "ON CONFLICT (url, etag) DO NOTHING RETURNING id, url, etag"
)
_PENDING = text(
    f"SELECT {', '.join(c.name for c in EventObject.__table__.c)} FROM event_object "  # noqa: S608
    "WHERE job_id IS NULL AND (batch_id, card_key) IN "
    "(SELECT * FROM unnest(CAST(:batches AS bigint[]), CAST(:cards AS text[]))) "
    "ORDER BY id FOR UPDATE"
)


# One statement for every link of a commit (executemany sent one UPDATE per ledger row:
# ~9 ms of a listener commit of 45 sides on this box, the largest of its statements).
_RESOLVE = text(
    "UPDATE event_object SET job_id = l.jid, resolved_at = :now, claimed_name_enc = NULL,"
    " claimed_id_enc = NULL FROM unnest(CAST(:oids AS bigint[]), CAST(:jids AS bigint[])) AS l(oid, jid)"
    " WHERE event_object.id = l.oid"
)


def insert_objects(session: Session, rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Insert ledger rows, skipping object versions already there; {(url, etag): id} of the new ones."""
    if not rows:
        return {}
    if _postgres(session):
        columns = {c: [r.get(c) for r in rows] for c, _ in _LEDGER_COLUMNS}
        inserted = session.connection().execute(_INSERT_LEDGER, columns)
        return {(str(url), str(etag)): int(oid) for oid, url, etag in inserted}
    stmt = (
        sqlite.insert(EventObject)
        .on_conflict_do_nothing(index_elements=["url", "etag"])
        .returning(EventObject.id, EventObject.url, EventObject.etag)
    )
    result = session.execute(stmt, rows)
    return {(str(url), str(etag)): int(oid) for oid, url, etag in result}


class LedgerRow(Protocol):
    """A ledger row as ``pending_sides`` returns it (a Core row with the table's columns)."""

    id: int
    batch_id: int
    url: str
    etag: str
    size: int
    card_key: str | None
    side: str | None
    external_ref: str | None
    claimed_name_enc: bytes | None
    claimed_id_enc: bytes | None
    problem: str | None


def pending_sides(session: Session, cards: Iterable[tuple[int, str]]) -> list[LedgerRow]:
    """Every side still waiting of the named (batch, card) pairs, locked until commit.

    Rows with the ledger's columns as attributes (``row.side``, ``row.url``...), not ORM
    objects: the listener's commit reads them once and writes through Core.
    """
    wanted = sorted(set(cards))
    if not wanted:
        return []
    if _postgres(session):
        params = {"batches": [b for b, _ in wanted], "cards": [c for _, c in wanted]}
        return cast(list[LedgerRow], list(session.connection().execute(_PENDING, params)))
    stmt = (
        select(*EventObject.__table__.c)
        .where(
            EventObject.job_id.is_(None),
            tuple_(EventObject.batch_id, EventObject.card_key).in_(wanted),
        )
        .order_by(EventObject.id)
    )
    return cast(list[LedgerRow], list(session.execute(stmt)))


def expired_cards(session: Session, seen_before: dt.datetime, limit: int) -> list[tuple[int, str]]:
    """(batch, card) of pending sides that arrived before ``seen_before``.

    Not locked here: the caller then locks the cards (advisory, the same first lock a
    recording transaction takes) and reads their pending sides again under it, so a
    card another sweeper resolved meanwhile simply has no pending side left.
    """
    stmt = (
        select(EventObject.batch_id, EventObject.card_key)
        .where(
            EventObject.job_id.is_(None),
            EventObject.card_key.is_not(None),
            EventObject.seen_at < seen_before,
        )
        .order_by(EventObject.seen_at)
        .limit(limit)
    )
    return sorted({(int(b), str(c)) for b, c in session.execute(stmt)})


def resolved_sides(session: Session, cards: Iterable[tuple[int, str]]) -> dict[tuple[int, str, str], int]:
    """{(batch, card, side): job} of sides of these cards already in a job (a late partner's reason)."""
    wanted = sorted(set(cards))
    if not wanted:
        return {}
    rows = session.execute(
        select(EventObject.batch_id, EventObject.card_key, EventObject.side, EventObject.job_id).where(
            EventObject.job_id.is_not(None),
            tuple_(EventObject.batch_id, EventObject.card_key).in_(wanted),
        )
    )
    return {(int(b), str(c), str(s)): int(j) for b, c, s, j in rows}


def allot_rows(session: Session, batch_id: int, n: int) -> int:
    """Reserve ``n`` row numbers of a standing batch; returns the first.

    The batch row's count is the counter: an atomic ``UPDATE .. RETURNING``, so listener
    threads and processes appending to one batch never draw the same row number.
    """
    total = session.execute(
        update(Batch)
        .where(Batch.id == batch_id)
        .values(total_rows=Batch.total_rows + n, ingest_complete=True)
        .returning(Batch.total_rows)
    ).scalar_one()
    return int(total) - n + 1


def resolve(session: Session, links: list[tuple[int, int]], now: dt.datetime) -> None:
    """Point ledger rows at their jobs ((ledger id, job id) pairs); their claims are dropped
    (the job holds them now, under its own tokens)."""
    if not links:
        return
    if _postgres(session):
        params = {"oids": [o for o, _ in links], "jids": [j for _, j in links], "now": now}
        session.connection().execute(_RESOLVE, params)
        return
    session.execute(
        update(EventObject.__table__)  # type: ignore[arg-type]
        .where(EventObject.__table__.c.id == bindparam("oid"))
        .values(job_id=bindparam("jid"), resolved_at=now, claimed_name_enc=None, claimed_id_enc=None),
        [{"oid": oid, "jid": jid} for oid, jid in links],
    )


_flows: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}


def batch_flows(session: Session, batch_ids: Iterable[int]) -> dict[int, tuple[str, dict[str, Any]]]:
    """{batch: (provider, config)}.

    A batch's provider and config are written once, when it is created, so they are
    remembered per database and batch: the listener's commit, which waits for every
    round trip while its receive threads hold the GIL, asks for them once per batch.
    """
    db = str(session.get_bind().engine.url)
    wanted = set(batch_ids)
    missing = [b for b in wanted if (db, b) not in _flows]
    if missing:
        rows = session.execute(
            select(Batch.id, Batch.provider, Batch.provider_config).where(Batch.id.in_(missing))
        )
        if len(_flows) > 10_000:
            _flows.clear()
        for b, p, c in rows:
            _flows[(db, int(b))] = (str(p), dict(c or {}))
    return {b: (_flows[(db, b)][0], dict(_flows[(db, b)][1])) for b in wanted if (db, b) in _flows}


def ledger_summary(session: Session, batch_ids: Iterable[int]) -> dict[str, int]:
    """Objects the ledger holds for these batches: total, pending, in a job."""
    ids = list(set(batch_ids))
    rows = list(session.execute(select(EventObject.job_id).where(EventObject.batch_id.in_(ids))).scalars())
    pending = sum(1 for j in rows if j is None)
    return {"objects": len(rows), "pending": pending, "in_jobs": len(rows) - pending}


def upload_versions(conn: Any, job_id: int) -> dict[str, str]:
    """{url: etag} of the object versions a job was made from (its ledger rows), for the
    worker to read exactly those (``S3Storage.read_object``'s ``etag``)."""
    rows = conn.execute(
        select(EventObject.url, EventObject.etag).where(EventObject.job_id == job_id, EventObject.etag != "")
    )
    return {str(url): str(etag) for url, etag in rows}


def store_claims(conn: Any, job_id: int, owner: str, values: dict[str, Any]) -> bool:
    """Write the claims a worker read from a card's upload onto its job, while it holds the
    lease (``workers.upload_claims``); False when the lease is gone (another worker has it)."""
    result = conn.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.lease_owner == owner)
        .values(updated_at=utcnow(), **values)
    )
    return bool(result.rowcount)


__all__ = [
    "LedgerRow",
    "allot_rows",
    "batch_flows",
    "expired_cards",
    "insert_objects",
    "known_objects",
    "ledger_summary",
    "lock_cards",
    "pending_sides",
    "pending_summary",
    "resolve",
    "resolved_sides",
    "store_claims",
    "upload_versions",
]


def pending_summary(session: Session) -> dict[str, Any]:
    """Sides waiting for their partner: how many, and the oldest's arrival (for `idbatch events pending`)."""
    count, oldest = session.execute(
        select(func.count(), func.min(EventObject.seen_at)).where(EventObject.job_id.is_(None))
    ).one()
    return {"pending_sides": int(count), "oldest_seen_at": oldest.isoformat() if oldest else None}
