"""Turn a manifest into a batch of jobs: one short transaction per chunk, then enqueue.

Every input row becomes exactly one job row, bad rows included (status ``rejected``
with the reason), so ``count(job) == rows in the manifest`` always holds and the report
can account for every row. Messages are published only after the chunk committed, so
a worker never receives the id of a row it cannot see yet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import insert, update

from db.models import Batch, Job, utcnow
from db.session import session_scope
from idbatch.domain import BatchKind, JobStatus
from idbatch.pii import vault
from idbatch.settings import Settings
from producers.csv_manifest import ManifestRow, RowError, read_manifest

CHUNK = 1000


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


def _chunks(items: Iterable[ManifestRow | RowError]) -> Iterator[list[ManifestRow | RowError]]:
    chunk: list[ManifestRow | RowError] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def ingest_rows(
    batch_id: int,
    items: Iterable[ManifestRow | RowError],
    provider: str,
    config: dict[str, Any],
    *,
    enqueue: bool = True,
) -> SubmitResult:
    from workers.tasks import verify

    rows = queued = rejected = 0
    for chunk in _chunks(items):
        values = [_job_values(batch_id, item, provider, config) for item in chunk]
        with session_scope() as session:
            ids = session.scalars(insert(Job).returning(Job.id, sort_by_parameter_order=True), values).all()
        to_send = [job_id for job_id, v in zip(ids, values, strict=True) if v["status"] == JobStatus.QUEUED]
        rows += len(values)
        queued += len(to_send)
        rejected += len(values) - len(to_send)
        if enqueue and to_send:
            with verify.app.producer_or_acquire() as producer:
                for job_id in to_send:
                    verify.apply_async((job_id,), producer=producer)
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
