"""Turn a manifest into a batch of jobs: one short transaction per chunk, then enqueue.

Every input row becomes exactly one job row, bad rows included (status ``rejected``
with the reason), so ``count(job) == rows in the manifest`` always holds and the report
can account for every row. Messages are published only after the chunk committed, so
a worker never receives the id of a row it cannot see yet.

The two bulk steps are pluggable (``inserter``, ``publish``) so that other producers
(S3 scans, upload events) and later policies (idempotency) reuse one loop:

- insert: ``db.ingest`` (COPY on Postgres, INSERT .. RETURNING elsewhere);
- publish: ``dispatch.publish``, after the chunk's commit: by default *one* message per
  chunk, which the ``idbatch.fan_out`` task expands into one ``verify`` message per job
  on a worker (``IDBATCH_INGEST_PUBLISH=each`` sends per-job messages from here).
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from sqlalchemy.exc import DataError, IntegrityError

from db.ingest import JobInserter, create_batch, default_inserter, finish_ingest, resume_point
from db.models import utcnow
from db.session import session_scope
from dispatch.publish import Publisher, after_commit, default_publisher
from idbatch import fields, metrics
from idbatch.domain import BatchKind, JobStatus
from idbatch.logging import get_logger
from idbatch.pii import AD_CLAIMED_ID, AD_CLAIMED_NAME, scrub, vault
from idbatch.providers import ConfigError, check_config
from idbatch.settings import Settings, get_settings
from idbatch.storage import s3_allowlist
from producers.csv_manifest import ManifestError, ManifestRow, RowError, read_manifest
from producers.keys import _key_maker

# Rows per transaction and per fan-out message. 5000 instead of 1000 measured +12 % rows/s
# (fewer commits and round trips); memory stays bounded by (queue depth + 2) chunks.
CHUNK = 5000

log = get_logger(__name__)


@dataclass
class SubmitResult:
    batch_id: int
    rows: int
    queued: int
    rejected: int


def _job_values(
    batch_id: int, item: ManifestRow | RowError, provider: str, config: dict[str, Any]
) -> dict[str, Any]:
    v = vault()
    if isinstance(item, RowError):
        return _rejected(batch_id, item.row_number, item.line, item.external_ref, item.reason)
    return {
        "batch_id": batch_id,
        "row_number": item.row_number,
        "line_number": item.line,
        "external_ref": item.external_ref,
        "front_image": item.front_image,
        "back_image": item.back_image,
        "claimed_name_enc": v.encrypt(item.name, AD_CLAIMED_NAME),
        "claimed_id_enc": v.encrypt(item.id_number, AD_CLAIMED_ID),
        "claimed_id_hash": v.lookup_hash(item.id_number),
        "idempotency_key": _key_maker(provider, config)(
            item.front_image, item.back_image, item.name, item.id_number
        ),
        "status": JobStatus.QUEUED,
    }


def _rejected(batch_id: int, row: int, line: int | None, ref: str | None, reason: str) -> dict[str, Any]:
    """A rejected row's job: whatever it held is kept in a form every database stores."""
    return {
        "batch_id": batch_id,
        "row_number": row,
        "line_number": line,
        "external_ref": fields.storable(ref, fields.EXTERNAL_REF_MAX),
        "status": JobStatus.REJECTED,
        "error_class": "input",
        "last_error": fields.storable(scrub(reason), fields.REASON_MAX),  # never an ID number
        "finished_at": utcnow(),
    }


_CHECKED = (
    ("external_ref", fields.EXTERNAL_REF_MAX),
    ("front_image", fields.IMAGE_REF_MAX),
    ("back_image", fields.IMAGE_REF_MAX),
)


def storable_rows(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row as the database will accept it, whichever producer made it.

    A queued row with a value the database would refuse (a NUL, an over-long S3 key, a
    lone surrogate) becomes a rejected row naming the column; a rejected row keeps its
    values, made storable. So an insert never fails on a row's content.
    """
    out = []
    for row in values:
        if row["status"] != JobStatus.QUEUED:
            for column in ("external_ref", "front_image", "back_image"):
                if isinstance(row.get(column), str):
                    row[column] = fields.storable(
                        row[column],
                        fields.IMAGE_REF_MAX if column != "external_ref" else fields.EXTERNAL_REF_MAX,
                    )
            out.append(row)
            continue
        found = next(
            (
                (column, why)
                for column, limit in _CHECKED
                if isinstance(row.get(column), str) and (why := fields.problem(row[column], limit))
            ),
            None,
        )
        if found is None:
            out.append(row)
            continue
        column, why = found
        where = f"row {row['row_number']}" + (
            f" (line {row['line_number']})" if row.get("line_number") else ""
        )
        out.append(
            _rejected(
                row["batch_id"],
                row["row_number"],
                row.get("line_number"),
                row.get("external_ref"),
                f"{where}, column {column}: value {why}",
            )
        )
    return out


def _bisecting(commit: Callable[[list[dict[str, Any]]], None], values: list[dict[str, Any]]) -> None:
    """Commit a chunk; if the database refuses it, commit its halves, down to single rows.

    ``storable_rows`` should leave nothing to refuse; this is the second line, so that one
    row can never take a chunk down: the row the database still refuses becomes a
    rejected job naming the error class (its content is not echoed: it may hold PII).
    """
    try:
        commit(values)
    except (DataError, IntegrityError) as exc:
        if len(values) > 1:
            middle = len(values) // 2
            _bisecting(commit, values[:middle])
            _bisecting(commit, values[middle:])
            return
        (row,) = values
        if row["status"] != JobStatus.QUEUED:
            raise  # even the rejected form is refused (a duplicate row number): a real fault
        log.warning("the database refused a row", row=row["row_number"], error=type(exc.orig).__name__)
        reason = f"row {row['row_number']}: the database refused the row ({type(exc.orig).__name__})"
        commit([_rejected(row["batch_id"], row["row_number"], row.get("line_number"), None, reason)])


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
    already: int = 0,
) -> SubmitResult:
    publisher = publish or default_publisher(get_settings().ingest_publish)
    make_values = job_values or _job_values
    counts = {"rows": 0, "queued": 0}

    def commit(values: list[dict[str, Any]]) -> None:
        with session_scope() as session:
            ids = (inserter or default_inserter(session))(session, values)
            to_send = [i for i, v in zip(ids, values, strict=True) if v["status"] == JobStatus.QUEUED]
            if enqueue:
                after_commit(session, publisher, to_send)
        counts["rows"] += len(values)
        counts["queued"] += len(to_send)
        metrics.ingest_progress.committed(len(values), len(to_send))

    def write(values: list[dict[str, Any]]) -> None:
        _bisecting(commit, storable_rows(values))

    with _ChunkWriter(write) as writer:
        for chunk in _chunks(items, chunk_size):
            writer.put([make_values(batch_id, item, provider, config) for item in chunk])
    rows, queued = counts["rows"], counts["queued"]
    finish_ingest(batch_id, rows, total=already + rows if already else None)
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
    resume: int | None = None,
) -> SubmitResult:
    provider = provider or settings.provider
    config = config or {}
    items = read_manifest(
        stream,
        encoding=encoding,
        allowed_private_hosts=settings.allowed_private_hosts,
        s3_allowed=s3_allowlist(settings),
    )
    return submit_items(
        items, source=source, kind=kind, provider=provider, config=config, enqueue=enqueue, resume=resume
    )


def submit_items(
    items: Iterator[ManifestRow | RowError],
    *,
    source: str,
    kind: BatchKind,
    provider: str,
    config: dict[str, Any],
    enqueue: bool = True,
    job_values: Callable[..., dict[str, Any]] | None = None,
    resume: int | None = None,
) -> SubmitResult:
    """Create the batch once the first item is read, then ingest every item into it.

    Reading first means a manifest that is missing or has no usable header fails before
    any batch exists, instead of leaving an empty batch behind. An ingest that stops
    half-way (the database went away) raises ``IngestInterrupted``: the batch says so
    (``ingest_complete`` false) and ``resume=<batch id>`` with the same input appends the
    rows after the last one committed: chunks commit whole and in order, so no hole.
    """
    already = 0
    if resume is not None:
        provider, config, last_row, already = resume_point(resume)
        items = (item for item in items if item.row_number > last_row)
    check_config(provider, config)  # before anything is read or written
    first = next(items, None)
    batch_id = resume if resume is not None else create_batch(source, kind, provider, config)

    def all_items() -> Iterator[ManifestRow | RowError]:
        if first is not None:
            yield first
        yield from items

    try:
        return ingest_rows(
            batch_id, all_items(), provider, config, enqueue=enqueue, job_values=job_values, already=already
        )
    except (ManifestError, ConfigError):
        raise
    except Exception as exc:
        raise IngestInterrupted(batch_id, exc) from exc


class IngestInterrupted(RuntimeError):
    """Ingest stopped part-way; what was committed stays, and the batch can be resumed."""

    def __init__(self, batch_id: int, cause: BaseException) -> None:
        super().__init__(f"ingest of batch {batch_id} stopped: {type(cause).__name__}")
        self.batch_id = batch_id


def submit_path(path: Path, **kwargs: Any) -> SubmitResult:
    with path.open("rb") as fh:
        # the CLI's progress bar reads how far the file is read (tell() against its size)
        metrics.ingest_progress.source, metrics.ingest_progress.size = fh, path.stat().st_size
        try:
            return submit_manifest(fh, source=str(path.resolve()), **kwargs)
        finally:
            metrics.ingest_progress.source = None
