"""Turn a manifest into a batch of jobs: one short transaction per chunk, then enqueue.

Every input row becomes exactly one job row, bad rows included (status ``rejected``
with the reason), so ``count(job) == rows in the manifest`` always holds and the report
can account for every row. Messages are published only after the chunk committed, so
a worker never receives the id of a row it cannot see yet.

The two bulk steps are pluggable (``inserter``, ``publish``) so that other producers
(S3 scans, upload events) and later policies (idempotency) reuse one loop:

- insert: ``copy_insert`` on Postgres (COPY, ids drawn from the sequence in one round
  trip), ``insert_returning`` elsewhere; ``bench/ingest.py`` measures both paths.
- publish: ``publish_fanout`` sends *one* message per committed chunk, which the
  ``idbatch.fan_out`` task expands into one ``verify`` message per job on a worker;
  ``publish_each`` sends the per-job messages from here (``IDBATCH_INGEST_PUBLISH``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import insert, text, update
from sqlalchemy.orm import Session

from db.models import Batch, Job, utcnow
from db.session import session_scope
from idbatch.domain import BatchKind, JobStatus
from idbatch.pii import vault
from idbatch.settings import Settings, get_settings
from producers.csv_manifest import ManifestRow, RowError, read_manifest

CHUNK = 1000

JobInserter = Callable[[Session, list[dict[str, Any]]], list[int]]
Publisher = Callable[[list[int]], None]


@dataclass
class SubmitResult:
    batch_id: int
    rows: int
    queued: int
    rejected: int


def idempotency_key(
    provider: str,
    config: dict[str, Any],
    front: str,
    back: str | None,
    claimed_name: str | None,
    claimed_id: str | None,
) -> str:
    """What is being verified, by whom, how: equal keys mean the same billable question."""
    material = json.dumps(
        [provider, config, front, back, claimed_name, claimed_id],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()


def create_batch(source: str, kind: BatchKind, provider: str, config: dict[str, Any]) -> int:
    with session_scope() as session:
        batch = Batch(source=source, kind=kind, provider=provider, provider_config=config)
        session.add(batch)
        session.flush()
        return batch.id


def _job_values(
    batch_id: int, item: ManifestRow | RowError, provider: str, config: dict[str, Any]
) -> dict[str, Any]:
    v = vault()
    if isinstance(item, RowError):
        now = utcnow()
        return {
            "batch_id": batch_id,
            "row_number": item.row_number,
            "external_ref": item.external_ref,
            "status": JobStatus.REJECTED,
            "error_class": "input",
            "last_error": item.reason,
            "finished_at": now,
        }
    return {
        "batch_id": batch_id,
        "row_number": item.row_number,
        "external_ref": item.external_ref,
        "front_image": item.front_image,
        "back_image": item.back_image,
        "claimed_name_enc": v.encrypt(item.name),
        "claimed_id_enc": v.encrypt(item.id_number),
        "claimed_id_hash": v.lookup_hash(item.id_number),
        "idempotency_key": idempotency_key(
            provider, config, item.front_image, item.back_image, item.name, item.id_number
        ),
        "status": JobStatus.QUEUED,
    }


def _chunks(
    items: Iterable[ManifestRow | RowError], size: int = CHUNK
) -> Iterator[list[ManifestRow | RowError]]:
    chunk: list[ManifestRow | RowError] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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
        session.scalars(
            text("SELECT nextval(pg_get_serial_sequence('job', 'id')) FROM generate_series(1, :n)"),
            {"n": len(values)},
        )
    )
    defaults = _column_defaults()
    names = sorted({k for v in values for k in v} | set(defaults))
    fill = {name: defaults[name]() if name in defaults else None for name in names}
    columns = ["id", *names]
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY job ({', '.join(columns)}) FROM STDIN") as copy:
        for job_id, row in zip(ids, values, strict=True):
            # JobStatus is a StrEnum: psycopg dumps it as its value
            copy.write_row([job_id, *[row[n] if n in row else fill[n] for n in names]])
    return ids


def default_inserter(session: Session) -> JobInserter:
    bind = session.get_bind()
    if bind.dialect.name == "postgresql" and bind.dialect.driver == "psycopg":
        return copy_insert
    return insert_returning


def publish_each(job_ids: list[int]) -> None:
    """One verify message per job, from this process, over one broker connection."""
    from workers.tasks import verify

    with verify.app.producer_or_acquire() as producer:
        for job_id in job_ids:
            verify.apply_async((job_id,), producer=producer)


def publish_fanout(job_ids: list[int]) -> None:
    """One message for the whole committed chunk; a worker's ``fan_out`` task expands it."""
    from workers.tasks import fan_out

    fan_out.apply_async((job_ids,))


def default_publisher(settings: Settings) -> Publisher:
    return publish_fanout if settings.ingest_publish == "fanout" else publish_each


def ingest_rows(
    batch_id: int,
    items: Iterable[ManifestRow | RowError],
    provider: str,
    config: dict[str, Any],
    *,
    enqueue: bool = True,
    inserter: JobInserter | None = None,
    publish: Publisher | None = None,
    chunk_size: int = CHUNK,
    job_values: Callable[..., dict[str, Any]] | None = None,
) -> SubmitResult:
    publish = publish or default_publisher(get_settings())
    make_values = job_values or _job_values
    rows = queued = rejected = 0
    for chunk in _chunks(items, chunk_size):
        values = [make_values(batch_id, item, provider, config) for item in chunk]
        with session_scope() as session:
            ids = (inserter or default_inserter(session))(session, values)
        to_send = [job_id for job_id, v in zip(ids, values, strict=True) if v["status"] == JobStatus.QUEUED]
        rows += len(values)
        queued += len(to_send)
        rejected += len(values) - len(to_send)
        if enqueue and to_send:
            publish(to_send)
    with session_scope() as session:
        session.execute(
            update(Batch)
            .where(Batch.id == batch_id)
            .values(total_rows=Batch.total_rows + rows, ingest_complete=True)
        )
    return SubmitResult(batch_id, rows, queued, rejected)


def submit_manifest(
    stream: BinaryIO,
    *,
    source: str,
    settings: Settings,
    provider: str | None = None,
    config: dict[str, Any] | None = None,
    kind: BatchKind = BatchKind.BACKFILL,
    encoding: str | None = None,
    enqueue: bool = True,
) -> SubmitResult:
    provider = provider or settings.provider
    config = config or {}
    items = read_manifest(stream, encoding=encoding, allowed_private_hosts=settings.allowed_private_hosts)
    first = next(items, None)  # surfaces a header error before any batch exists
    batch_id = create_batch(source, kind, provider, config)

    def all_items() -> Iterator[ManifestRow | RowError]:
        if first is not None:
            yield first
        yield from items

    return ingest_rows(batch_id, all_items(), provider, config, enqueue=enqueue)


def submit_path(path: Path, **kwargs: Any) -> SubmitResult:
    with path.open("rb") as fh:
        return submit_manifest(fh, source=str(path.resolve()), **kwargs)
