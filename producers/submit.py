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

import contextvars
import hashlib
import json
import operator
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from sqlalchemy import insert, text, update
from sqlalchemy.orm import Session

from db.models import Batch, Job, utcnow
from db.session import session_scope
from idbatch.domain import BatchKind, JobStatus
from idbatch.logging import get_logger
from idbatch.pii import scrub, vault
from idbatch.settings import Settings, get_settings
from producers.csv_manifest import ManifestRow, RowError, read_manifest

# Rows per transaction and per fan-out message. 5000 instead of 1000 measured +12 % rows/s
# (fewer commits and round trips); memory stays bounded by (queue depth + 2) chunks.
CHUNK = 5000

log = get_logger(__name__)

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
    """What is being verified, by whom, how: equal keys mean the same billable question.

    The digest is over ``json.dumps([provider, config, front, back, name, id],
    ensure_ascii=False, sort_keys=True, separators=(",", ":"))``. Keys are compared with
    keys stored months ago, so that text must never change; ``_KeyMaker`` builds the
    same bytes faster for bulk ingest and a test holds the two equal.
    """
    return _KeyMaker(provider, config)(front, back, claimed_name, claimed_id)


class _KeyMaker:
    """``idempotency_key`` for one (provider, config): the JSON prefix is encoded once.

    Ingest computes a key per row; a full ``json.dumps`` of the list costs ~6 µs, the
    C string encoder on the four fields ~1 µs.
    """

    def __init__(self, provider: str, config: dict[str, Any]) -> None:
        head = json.dumps([provider, config], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        self._head = head[:-1] + ","

    def __call__(self, front: str, back: str | None, name: str | None, id_number: str | None) -> str:
        parts = (front, back, name, id_number)
        fields = ",".join("null" if f is None else encode_basestring(f) for f in parts)
        return hashlib.sha256(f"{self._head}{fields}]".encode()).hexdigest()


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
        "idempotency_key": _key_maker(provider, config)(
            item.front_image, item.back_image, item.name, item.id_number
        ),
        "status": JobStatus.QUEUED,
    }


_KEY_MAKERS: dict[str, _KeyMaker] = {}


def _key_maker(provider: str, config: dict[str, Any]) -> _KeyMaker:
    """The row's key maker; by value of the config, which is usually empty (no dumps then)."""
    cache_key = provider if config == {} else json.dumps([provider, config], sort_keys=True)
    maker = _KEY_MAKERS.get(cache_key)
    if maker is None:
        if len(_KEY_MAKERS) > 64:
            _KEY_MAKERS.clear()
        maker = _KEY_MAKERS[cache_key] = _KeyMaker(provider, config)
    return maker


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
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY job (id, {', '.join(names)}) FROM STDIN") as copy:
        for job_id, row in zip(ids, values, strict=True):
            # JobStatus is a StrEnum: psycopg dumps it as its value
            copy.write_row(pick({**fill, **row, "id": job_id}))
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


class _ChunkWriter:
    """Commits and publishes chunks in order, on a background thread once there are two.

    Reading and validating a chunk is Python work under the GIL; committing it is mostly
    Postgres' work on the other core, with this process waiting on the socket. One writer
    thread fed through a short queue overlaps the two, so ingest runs at the speed of the
    slower side instead of their sum (``bench/ingest.py``). Order and the guarantee are
    unchanged: one writer, chunks in input order, publish only after the chunk's commit.
    A single-chunk submission (an upload event, a small manifest) never starts the thread.

    A writer error stops the reader at its next chunk and is raised in the caller's
    thread; a reader error still lets the writer finish the chunks already handed over.
    """

    _DONE = object()

    def __init__(self, write: Callable[[list[dict[str, Any]]], None], depth: int = 2) -> None:
        self._write = write
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._first: list[dict[str, Any]] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def put(self, values: list[dict[str, Any]]) -> None:
        self._raise_writer_error()
        if self._thread is None:
            if self._first is None:
                self._first = values
                return
            context = contextvars.copy_context()  # keep structlog's bound context in the writer
            self._thread = threading.Thread(target=context.run, args=(self._run,), name="ingest-writer")
            self._thread.start()
            self._queue.put(self._first)
            self._first = None
        self._queue.put(values)

    def _run(self) -> None:
        while (values := self._queue.get()) is not self._DONE:
            if self._error is None:  # after an error, only drain so the reader never blocks
                try:
                    self._write(values)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    self._error = exc

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> _ChunkWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._thread is not None:
            self._queue.put(self._DONE)
            self._thread.join()
        elif self._first is not None:
            try:
                self._write(self._first)
            except Exception as error:
                if exc_type is None:
                    raise
                self._error = error  # the reader's exception is the one to raise
        if exc_type is None:
            self._raise_writer_error()
        elif self._error is not None:
            log.error(
                "ingest writer failed too while the reader failed",
                error=type(self._error).__name__,
                detail=scrub(str(self._error)),
            )


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
    counts = {"rows": 0, "queued": 0}

    def write(values: list[dict[str, Any]]) -> None:
        with session_scope() as session:
            ids = (inserter or default_inserter(session))(session, values)
        to_send = [job_id for job_id, v in zip(ids, values, strict=True) if v["status"] == JobStatus.QUEUED]
        counts["rows"] += len(values)
        counts["queued"] += len(to_send)
        if enqueue and to_send:
            publish(to_send)

    with _ChunkWriter(write) as writer:
        for chunk in _chunks(items, chunk_size):
            writer.put([make_values(batch_id, item, provider, config) for item in chunk])
    rows, queued = counts["rows"], counts["queued"]
    with session_scope() as session:
        session.execute(
            update(Batch)
            .where(Batch.id == batch_id)
            .values(total_rows=Batch.total_rows + rows, ingest_complete=True)
        )
    return SubmitResult(batch_id, rows, queued, rows - queued)


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
    return submit_items(items, source=source, kind=kind, provider=provider, config=config, enqueue=enqueue)


def submit_items(
    items: Iterator[ManifestRow | RowError],
    *,
    source: str,
    kind: BatchKind,
    provider: str,
    config: dict[str, Any],
    enqueue: bool = True,
    job_values: Callable[..., dict[str, Any]] | None = None,
) -> SubmitResult:
    """Create the batch once the first item is read, then ingest every item into it.

    Reading first means a manifest that is missing or has no usable header fails before
    any batch exists, instead of leaving an empty batch behind.
    """
    first = next(items, None)
    batch_id = create_batch(source, kind, provider, config)

    def all_items() -> Iterator[ManifestRow | RowError]:
        if first is not None:
            yield first
        yield from items

    return ingest_rows(batch_id, all_items(), provider, config, enqueue=enqueue, job_values=job_values)


def submit_path(path: Path, **kwargs: Any) -> SubmitResult:
    with path.open("rb") as fh:
        return submit_manifest(fh, source=str(path.resolve()), **kwargs)
