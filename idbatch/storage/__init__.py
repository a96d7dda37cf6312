"""Storage backends behind one Protocol (``base.Storage``): ``local`` files and ``s3``.

``storage_for(url, settings)`` picks the backend by the URL's scheme.
"""

from __future__ import annotations

from idbatch.settings import Settings
from idbatch.storage.base import ObjectInfo, ObjectMissing, Storage, StorageError, StorageUnavailable


def s3_allowlist(settings: Settings) -> tuple[str, ...] | None:
    """The buckets (``bucket`` or ``bucket/prefix``) s3:// refs may name; None: any.

    Unset means any bucket in development and none in production: a manifest must not
    make the workers read, and hand to a provider, a bucket it has no business in.
    """
    if settings.s3_allowed:
        return tuple(settings.s3_allowed)
    return () if settings.env == "production" else None


def s3_ref_allowed(ref: str, allowed: tuple[str, ...] | None) -> bool:
    if allowed is None:
        return True
    path = ref.removeprefix("s3://")
    return any(path == entry or path.startswith(entry.rstrip("/") + "/") for entry in allowed)


def storage_for(url: str, settings: Settings) -> Storage:
    if url.startswith("s3://"):
        from idbatch.storage.s3 import S3Storage, make_client

        return S3Storage(make_client("s3", settings.s3_endpoint_url))
    from idbatch.storage.local import LocalStorage

    return LocalStorage()


__all__ = [
    "ObjectInfo",
    "ObjectMissing",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "s3_allowlist",
    "s3_ref_allowed",
    "storage_for",
]
