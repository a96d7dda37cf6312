"""Producers for object storage: a manifest in S3, or a whole bucket prefix.

``submit_s3("s3://bucket/path/manifest.csv")`` streams the object through the same CSV
reader as a local manifest; relative image paths in it resolve against the manifest's
folder in the same bucket (``images/a.jpg`` next to ``s3://b/batch7/manifest.csv`` is
``s3://b/batch7/images/a.jpg``); absolute paths and ``..`` are rejected rows.

``submit_s3("s3://bucket/prefix/")`` walks the listing page by page and pairs images by
this naming convention (extension case-insensitive)::

    <ref>-front.jpg|jpeg|png|bmp    the card's front (required)
    <ref>-back.jpg|jpeg|png|bmp     its back (optional)

``<ref>`` is the key below the prefix, so ``2024/07/CARD-9-front.jpg`` under
``s3://b/kyc/`` is job ``2024/07/CARD-9``. A sidecar ``<prefix>_manifest.csv``, when
present, is read first as a manifest (claimed names/ID numbers, explicit pairs); the
objects it names are not paired again, every other object goes through the convention.
Every listed object ends up in exactly one job: paired images in their card's job,
anything else (no convention match, a back without a front, a duplicate side, an empty
or oversized object) as a rejected job whose ``external_ref`` names the object and whose
reason says why. Only the sidecar itself is not a job: it is the batch's source.

Memory stays bounded however large the prefix: S3 lists keys in UTF-8 byte order, so
all of ``<ref>``'s images (which start with ``<ref>-``) are adjacent, and a card is
emitted as soon as the listing has moved past that prefix. Only cards still waiting
for their other side are held — plus, with a sidecar, an 8-byte digest per named object.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idbatch import images
from idbatch.domain import BatchKind
from idbatch.pii import vault
from idbatch.settings import Settings
from idbatch.storage import ObjectInfo, ObjectMissing, Storage, s3_allowlist, s3_ref_allowed, storage_for
from idbatch.storage.s3 import parse_s3_url
from idbatch.upload_claims import short
from producers.csv_manifest import ManifestError, ManifestRow, RowError, read_manifest
from producers.keys import IDEMPOTENCY
from producers.submit import SubmitResult, _job_values, submit_items, submit_path

SIDECAR_NAME = "_manifest.csv"
CONVENTION = re.compile(r"^(?P<ref>.+)-(?P<side>front|back)\.(?:jpe?g|png|bmp)$", re.IGNORECASE)
CONVENTION_TEXT = "<ref>-front.<jpg|jpeg|png|bmp> / <ref>-back.<ext>"
MAX_REF = 256


@dataclass
class ObjectRow(ManifestRow):
    """A manifest row made from listed objects; ``objects`` name the exact versions."""

    objects: tuple[ObjectInfo, ...] = ()


@dataclass
class RejectedObjects(RowError):
    """A row error about listed objects, which stay named on the rejected job."""

    front: str | None = None
    back: str | None = None


@dataclass
class _Card:
    ref: str
    front: ObjectInfo | None = None
    back: ObjectInfo | None = None
    problems: list[str] = field(default_factory=list)


def is_manifest_url(url: str) -> bool:
    return url.lower().endswith(".csv")


def object_job_values(
    batch_id: int, item: ManifestRow | RowError, provider: str, config: dict[str, Any]
) -> dict[str, Any]:
    """submit's job values; for listed objects the idempotency key names object *versions*.

    ``bucket/key#etag`` instead of the bare URL: a re-scan finds the same key for an
    unchanged object and a new one for an object replaced under the same name.
    """
    values = _job_values(batch_id, item, provider, config)
    if isinstance(item, RejectedObjects):  # every listed object stays findable in the report
        values["front_image"], values["back_image"] = item.front, item.back
    if isinstance(item, ObjectRow) and item.objects:
        material = json.dumps(
            [provider, config, *(o.identity for o in item.objects)], sort_keys=True, separators=(",", ":")
        )
        values["idempotency_key"] = vault().keyed(IDEMPOTENCY, hashlib.sha256(material.encode()).hexdigest())
    return values


# --- manifest in S3 ---------------------------------------------------------------------


def resolve_refs(
    storage: Storage, manifest_url: str, items: Iterable[ManifestRow | RowError]
) -> Iterator[ManifestRow | RowError]:
    """Rewrite relative image paths as URLs next to the manifest; bad paths become row errors."""
    for item in items:
        if isinstance(item, RowError):
            yield item
            continue
        try:
            for column in ("front_image", "back_image"):
                ref = getattr(item, column)
                if ref and images.classify_ref(ref) == "local":
                    setattr(item, column, storage.join(manifest_url, ref))
        except (ValueError, images.ImageRefError) as exc:
            where = f"row {item.row_number} (line {item.line}), column {column}"
            yield RowError(item.row_number, item.line, f"{where}: {exc}", external_ref=item.external_ref)
            continue
        yield item


def manifest_items(
    storage: Storage, url: str, settings: Settings, encoding: str | None = None
) -> Iterator[ManifestRow | RowError]:
    try:
        stream = storage.open(url)
    except ObjectMissing as exc:
        raise ManifestError(f"manifest {url} cannot be read: {exc}") from exc
    with stream:
        rows = read_manifest(
            stream,
            encoding=encoding,
            allowed_private_hosts=settings.allowed_private_hosts,
            s3_allowed=s3_allowlist(settings),
        )
        yield from resolve_refs(storage, url, rows)


# --- prefix scan ------------------------------------------------------------------------


def _digest(url: str) -> int:
    return int.from_bytes(hashlib.blake2b(url.encode(), digest_size=8).digest(), "big")


def _ref_of(key: str, prefix: str) -> str:
    ref = key[len(prefix) :] if key.startswith(prefix) else key
    return short(ref, MAX_REF)


def scan_prefix(
    storage: Storage, prefix_url: str, settings: Settings, *, skip: set[int] | None = None, first_row: int = 1
) -> Iterator[ManifestRow | RowError]:
    """Pair the objects under ``prefix_url`` into cards; see the module docstring."""
    _, prefix = parse_s3_url(prefix_url) if prefix_url.startswith("s3://") else ("", prefix_url)
    sidecar_key = prefix + SIDECAR_NAME if prefix.endswith("/") or not prefix else None
    row = first_row
    pending: dict[str, _Card] = {}
    closing: list[tuple[str, str]] = []  # heap of (key prefix "<ref>-", ref)

    def reject(info: ObjectInfo, reason: str, side: str = "front") -> RowError:
        nonlocal row
        row += 1
        front, back = (info.url, None) if side == "front" else (None, info.url)
        return RejectedObjects(row - 1, 0, reason, _ref_of(info.key, prefix), front=front, back=back)

    def emit(card: _Card) -> ManifestRow | RowError:
        nonlocal row
        row += 1
        objects = tuple(o for o in (card.front, card.back) if o is not None)
        if card.front is None:
            card.problems.insert(0, f"back image without a front ({card.ref}-front.<ext>)")
        for side, info in (("front", card.front), ("back", card.back)):
            if info is not None and info.size == 0:
                card.problems.append(f"{side} image is empty (0 bytes)")
            elif info is not None and info.size > settings.image_max_bytes:
                card.problems.append(
                    f"{side} image is {info.size} bytes, over the {settings.image_max_bytes}-byte limit"
                )
        ref = short(card.ref, MAX_REF)
        if card.problems:
            return RejectedObjects(
                row - 1,
                0,
                "; ".join(card.problems),
                ref,
                front=card.front.url if card.front else None,
                back=card.back.url if card.back else None,
            )
        assert card.front is not None
        return ObjectRow(
            row - 1, 0, ref, card.front.url, card.back.url if card.back else None, None, None, objects=objects
        )

    for info in storage.iter_objects(prefix_url):
        key = info.key
        while closing and closing[0][0] < key and not key.startswith(closing[0][0]):
            _, done = heapq.heappop(closing)
            yield emit(pending.pop(done))
        if key == sidecar_key or (skip is not None and _digest(info.url) in skip):
            continue
        if key.endswith("/") and info.size == 0:
            yield reject(info, "folder placeholder object, not an image")
            continue
        match = CONVENTION.match(key[len(prefix) :])
        if match is None:
            yield reject(info, f"object name matches no naming convention ({CONVENTION_TEXT})")
            continue
        ref, side = match["ref"], match["side"].lower()
        card = pending.get(ref)
        if card is None:
            card = pending[ref] = _Card(ref)
            heapq.heappush(closing, (prefix + ref + "-", ref))
        if getattr(card, side) is not None:
            yield reject(info, f"second {side} image for {ref}; the first listed one is used", side)
            continue
        setattr(card, side, info)
    while closing:
        _, done = heapq.heappop(closing)
        yield emit(pending.pop(done))


def prefix_items(
    storage: Storage, prefix_url: str, settings: Settings, encoding: str | None = None
) -> Iterator[ManifestRow | RowError]:
    """The sidecar's rows (if any), then the convention-paired rest of the prefix."""
    sidecar = prefix_url + SIDECAR_NAME if prefix_url.endswith("/") else None
    named: set[int] | None = None
    last_row = 0
    if sidecar is not None:
        try:
            storage.head(sidecar)
        except ObjectMissing:
            sidecar = None
    if sidecar is not None:
        named = set()
        for item in manifest_items(storage, sidecar, settings, encoding):
            last_row = item.row_number
            if isinstance(item, ManifestRow):
                for ref in (item.front_image, item.back_image):
                    if ref:
                        named.add(_digest(ref))
            yield item
    yield from scan_prefix(storage, prefix_url, settings, skip=named, first_row=last_row + 1)


def submit_s3(
    url: str,
    *,
    settings: Settings,
    provider: str | None = None,
    config: dict[str, Any] | None = None,
    kind: BatchKind = BatchKind.BACKFILL,
    encoding: str | None = None,
    enqueue: bool = True,
    storage: Storage | None = None,
    resume: int | None = None,
) -> SubmitResult:
    """Create a batch from an S3 manifest (``*.csv``) or an S3 prefix, and enqueue its jobs."""
    if not s3_ref_allowed(url, s3_allowlist(settings)):
        raise ManifestError(f"{url}: bucket not allowed (IDBATCH_S3_ALLOWED)")
    storage = storage or storage_for(url, settings)
    provider = provider or settings.provider
    config = config or {}
    if is_manifest_url(url):
        items = manifest_items(storage, url, settings, encoding)
    else:
        items = _non_empty(prefix_items(storage, url, settings, encoding), url)
    return submit_items(
        items,
        source=url,
        kind=kind,
        provider=provider,
        config=config,
        enqueue=enqueue,
        job_values=object_job_values,
        resume=resume,
    )


def _non_empty(items: Iterator[ManifestRow | RowError], url: str) -> Iterator[ManifestRow | RowError]:
    """A prefix with no object is refused before any batch exists (S3 has no empty folders:
    it is a typo or the wrong bucket, not an empty batch)."""
    first = next(items, None)
    if first is None:
        raise ManifestError(f"{url}: no objects under this prefix")
    yield first
    yield from items


def submit_target(target: str, **kwargs: Any) -> SubmitResult:
    """``idbatch submit``'s argument: a local manifest path, an S3 manifest or an S3 prefix."""
    if target.startswith("s3://"):
        return submit_s3(target, **kwargs)
    path = Path(target)
    if not path.is_file():
        raise ManifestError(f"{target}: no such file")
    return submit_path(path, **kwargs)
