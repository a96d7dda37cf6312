"""How an S3 image reaches a provider: a presigned URL or inline bytes, per provider.

``url``: a presigned GET (``IDBATCH_S3_PRESIGN_TTL_S``, 5 minutes by default) that the
provider fetches itself; nothing large passes through the worker, but the store must be
reachable from the provider. ``inline``: the worker downloads the object and the adapter
sends it base64-encoded in the request; the bucket stays private. Either way the object
is checked first — HEAD for existence and size, then the bytes through
``images.inspect`` — so a missing, empty, non-image or oversized object becomes a
rejected job with the reason instead of a billed provider call.

The adapter reports what it sent as ``CallRecord.handoff`` (stored on the attempt);
an ``ImageSource`` offers only the chosen form, so that record is the configured choice.
"""

from __future__ import annotations

from typing import Literal

from idbatch import images
from idbatch.providers.base import ImageSource
from idbatch.settings import Settings
from idbatch.storage import s3_allowlist, s3_ref_allowed
from idbatch.storage.base import ObjectMissing, StorageUnavailable
from idbatch.storage.s3 import S3Storage, make_client

Handoff = Literal["url", "inline"]

# What each provider's API accepts decides the default; IDBATCH_S3_HANDOFF overrides.
DEFAULT_HANDOFF: dict[str, Handoff] = {
    "acedata": "url",  # check-1e takes image_url only
    "tencent_faceid": "inline",  # ImageBase64 keeps the bucket private; ImageUrl also works
    "tencent_ocr": "inline",
    "aliyun_market": "inline",  # the marketplace vendor takes base64 "image"
}
FALLBACK_HANDOFF: Handoff = "url"


def handoff_for(settings: Settings, provider: str) -> Handoff:
    return settings.s3_handoff.get(provider) or DEFAULT_HANDOFF.get(provider, FALLBACK_HANDOFF)


def s3_image_source(settings: Settings, ref: str, provider: str, etag: str | None = None) -> ImageSource:
    """Check an s3:// image and hand it off as configured; raises ImageRefError or StorageUnavailable.

    ``etag``: the object version its record names (an upload event's), or None."""
    if not s3_ref_allowed(ref, s3_allowlist(settings)):
        raise images.ImageRefError("bucket not allowed (IDBATCH_S3_ALLOWED)")
    storage = S3Storage(make_client("s3", settings.s3_endpoint_url))
    try:
        data, metadata = storage.read_object(ref, settings.image_max_bytes, etag)
    except ObjectMissing as exc:
        raise images.ImageRefError(str(exc)) from exc
    except ValueError as exc:  # over the size limit, told by HEAD before any GET
        raise images.ImageRefError(str(exc)) from exc
    images.inspect(data, settings.image_max_bytes)
    if handoff_for(settings, provider) == "inline":
        return ImageSource(ref=ref, url=None, load=lambda: data, metadata=metadata)
    try:
        url = storage.fetch_url(ref, settings.s3_presign_ttl_s)
    except Exception as exc:
        raise StorageUnavailable(f"cannot presign ({type(exc).__name__})") from exc
    return ImageSource(ref=ref, url=url, load=None, metadata=metadata)
