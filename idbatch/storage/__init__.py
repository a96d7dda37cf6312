"""Storage backends behind one Protocol (``base.Storage``): ``local`` files and ``s3``.

``storage_for(url, settings)`` picks the backend by the URL's scheme.
"""

from __future__ import annotations

from idbatch.settings import Settings
from idbatch.storage.base import ObjectInfo, ObjectMissing, Storage, StorageError, StorageUnavailable


def storage_for(url: str, settings: Settings) -> Storage:
    if url.startswith("s3://"):
        from idbatch.storage.s3 import S3Storage, make_client

        return S3Storage(make_client("s3", settings.s3_endpoint_url))
    from idbatch.storage.local import LocalStorage

    return LocalStorage()


__all__ = ["ObjectInfo", "ObjectMissing", "Storage", "StorageError", "StorageUnavailable", "storage_for"]
