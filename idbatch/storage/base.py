"""The storage seam: one Protocol for where manifests and images live, one module per backend.

Producers walk listings and stream manifests through it; workers read images and ask
for provider-fetchable URLs through it. Backends: ``local`` (files) and ``s3`` (AWS S3
and S3-compatible stores such as MinIO). Failures are mapped here into two classes:
``ObjectMissing`` (the object is not there: the job is rejected) and
``StorageUnavailable`` (the store is down or throttling: the job is retried).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol


class StorageError(Exception):
    """Base class for storage failures."""


class ObjectMissing(StorageError):
    """The named object does not exist (or we may not read it): retrying cannot help."""


class StorageUnavailable(StorageError):
    """The store failed transiently (5xx, throttling, connection error): retry later."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object in a listing or a HEAD answer.

    ``identity`` (url + etag) names this *version* of the object: the stable key a
    re-scan can use to tell "already submitted" from "new or replaced" (issue 5).
    """

    url: str
    key: str
    size: int
    etag: str = ""

    @property
    def identity(self) -> str:
        return f"{self.url}#{self.etag}" if self.etag else self.url


class Storage(Protocol):
    """Where manifests and images live. Implementations are safe to share between threads."""

    scheme: str

    def iter_objects(self, prefix_url: str) -> Iterator[ObjectInfo]:
        """Every object under ``prefix_url`` in key order, streamed page by page."""
        ...

    def head(self, url: str) -> ObjectInfo:
        """Size and version of one object; raises ObjectMissing."""
        ...

    def open(self, url: str) -> BinaryIO:
        """A streaming binary reader (iterating it yields lines); raises ObjectMissing."""
        ...

    def read(self, url: str, max_bytes: int) -> bytes:
        """The whole object, refusing (ValueError) anything over ``max_bytes`` *before* reading it."""
        ...

    def fetch_url(self, url: str, ttl_s: int) -> str | None:
        """A URL a third party can GET for ``ttl_s`` seconds, or None if the backend has none."""
        ...

    def join(self, base_url: str, relative: str) -> str:
        """``relative`` resolved against the folder of ``base_url`` (a manifest's location)."""
        ...
