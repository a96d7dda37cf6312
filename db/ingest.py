"""Bulk ingest: batches and job rows written in chunks, as fast as the database takes them.

- ``copy_insert`` on Postgres (COPY, ids drawn from the sequence in one round trip),
  ``insert_returning`` elsewhere; ``bench/ingest.py`` measures both paths.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from db.models import Batch, Job, utcnow
from db.session import session_scope
from db.sweeps import finish_batches
from idbatch.domain import BatchKind, BatchState

JobInserter = Callable[[Session, list[dict[str, Any]]], list[int]]


def create_batch(source: str, kind: BatchKind, provider: str, config: dict[str, Any]) -> int:
    with session_scope() as session:
        batch = Batch(source=source, kind=kind, provider=provider, provider_config=config)
        session.add(batch)
        session.flush()
        return batch.id


def insert_returning(session: Session, values: list[dict[str, Any]]) -> list[int]:
    """Portable bulk insert (SQLite, any driver): executemany INSERT .. RETURNING id."""
    return list(session.scalars(insert(Job).returning(Job.id, sort_by_parameter_order=True), values).all())


def _column_defaults() -> dict[str, Callable[[], Any]]:
    """Python-side defaults of job columns without a server default (COPY skips the ORM)."""
    out: dict[str, Callable[[], Any]] = {}
    for column in Job.__table__.columns:
        default = column.default
        if column.primary_key or default is None or column.server_default is not None:
            continue
        out[column.name] = _default_getter(default)
    return out


def _default_getter(default: Any) -> Callable[[], Any]:
    arg = default.arg
    if default.is_callable:
        return lambda: arg(None)  # SQLAlchemy wraps callables to take an execution context
    return lambda: arg


def copy_insert(session: Session, values: list[dict[str, Any]]) -> list[int]:
    """Postgres bulk insert: ids drawn from the job sequence, rows streamed with COPY.

    Columns are every key the rows name plus every column with a Python default, so a
    column added to the model later is filled just as the ORM would fill it.
    """
    if not values:
        return []
    ids = list(
        session.execute(
            text("SELECT nextval(pg_get_serial_sequence('job', 'id')) FROM generate_series(1, :n)"),
            {"n": len(values)},
        )
        .scalars()
        .all()
    )
    defaults = _column_defaults()
    names = sorted({k for v in values for k in v} | set(defaults))
    fill = {name: defaults[name]() if name in defaults else None for name in names}
    pick = operator.itemgetter("id", *names)
    import psycopg

    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    statement = f"COPY job (id, {', '.join(names)}) FROM STDIN"
    try:
        with cursor.copy(statement) as copy:
            for job_id, row in zip(ids, values, strict=True):
                # JobStatus is a StrEnum: psycopg dumps it as its value
                copy.write_row(pick({**fill, **row, "id": job_id}))
    except psycopg.IntegrityError as exc:  # raw driver errors: give callers SQLAlchemy's
        raise sa_exc.IntegrityError(statement, None, exc) from exc
    except psycopg.DataError as exc:
        raise sa_exc.DataError(statement, None, exc) from exc
    return ids


def default_inserter(session: Session) -> JobInserter:
    bind = session.get_bind()
    if bind.dialect.name == "postgresql" and bind.dialect.driver == "psycopg":
        return copy_insert
    return insert_returning


def finish_ingest(batch_id: int, rows: int, *, total: int | None = None) -> None:
    """Every row of the input is a job now: count them and mark the ingest complete.

    ``rows`` are added to the batch's count (a standing events batch grows); a resumed
    ingest sets the ``total`` it knows. A batch whose rows were all rejected at ingest
    (or that had none) is finished now.
    """
    count = Batch.total_rows + rows if total is None else total
    with session_scope() as session:
        session.execute(
            update(Batch).where(Batch.id == batch_id).values(total_rows=count, ingest_complete=True)
        )
    finish_batches(utcnow(), batch_id)


def standing_batch(source: str, provider: str, config: dict[str, Any]) -> int:
    """The active events batch for ``source`` (a queue), created on first use."""
    with session_scope() as session:
        found = session.scalar(
            select(Batch.id)
            .where(Batch.source == source, Batch.kind == BatchKind.EVENTS, Batch.state == BatchState.ACTIVE)
            .order_by(Batch.id.desc())
            .limit(1)
        )
    return int(found) if found is not None else create_batch(source, BatchKind.EVENTS, provider, config)


def next_row_number(batch_id: int) -> int:
    """The row number the next job appended to ``batch_id`` gets (a standing batch grows)."""
    with session_scope() as session:
        last = session.scalar(
            select(Job.row_number).where(Job.batch_id == batch_id).order_by(Job.row_number.desc()).limit(1)
        )
    return int(last or 0) + 1


def recorded_keys(batch_id: int, keys: set[str]) -> set[str]:
    """Which of ``keys`` are already the idempotency key of a job of ``batch_id``."""
    with session_scope() as session:
        return set(
            session.scalars(
                select(Job.idempotency_key).where(Job.batch_id == batch_id, Job.idempotency_key.in_(keys))
            )
        )


def resume_point(batch_id: int) -> tuple[str, dict[str, Any], int, int]:
    """(provider, config, last row committed, jobs so far) of a batch whose ingest stopped."""
    with session_scope() as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise ValueError(f"batch {batch_id} does not exist")
        if batch.ingest_complete:
            raise ValueError(f"batch {batch_id} was ingested completely; nothing to resume")
        last, jobs = session.execute(
            select(func.coalesce(func.max(Job.row_number), 0), func.count()).where(Job.batch_id == batch_id)
        ).one()
        return batch.provider, dict(batch.provider_config or {}), int(last), int(jobs)
