"""Turning a job's stored image reference into something a provider can receive."""

from __future__ import annotations

from pathlib import Path

from idbatch import images
from idbatch.providers.base import ImageSource
from idbatch.storage.handoff import s3_image_source
from workers.runtime import Runtime


def image_source(
    rt: Runtime, ref: str, manifest_source: str, provider: str = "", etag: str | None = None
) -> ImageSource:
    """A URL the provider may fetch and/or the bytes to send inline.

    Raises ImageRefError (the job is rejected) or StorageUnavailable (it is retried).
    URLs are checked against internal addresses again here, by *resolved* address
    (ingest checked the literal): DNS may have changed since.
    """
    settings = rt.settings
    kind = images.classify_ref(ref)
    if kind == "http":
        images.check_url(ref, settings.allowed_private_hosts, resolve=True)
        return ImageSource(ref=ref, url=ref, load=None)
    if kind == "s3":
        return s3_image_source(settings, ref, provider, etag)
    if "://" in manifest_source:
        # Producers resolve a remote manifest's relative paths at ingest; a local path
        # left in such a batch must never make the worker open one of its own files.
        raise images.ImageRefError("local file path in a batch whose manifest is not a local file")
    base = Path(manifest_source).parent if manifest_source else None
    path = images.resolve_local(ref, base, tuple(settings.image_roots))
    data = images.read_local(path, settings.image_max_bytes)
    images.inspect(data, settings.image_max_bytes)
    url = images.gateway_url(
        settings.gateway_url,
        path,
        settings.gateway_secret.get_secret_value().encode(),
        settings.gateway_url_ttl_s,
    )
    return ImageSource(ref=ref, url=url, load=lambda: data)
