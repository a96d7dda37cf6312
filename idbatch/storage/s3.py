"""AWS S3 and S3-compatible stores (MinIO) behind the storage seam.

Credentials and region come from boto3's default chain (``AWS_*`` environment
variables, ``AWS_PROFILE`` / ``~/.aws``, instance or task roles); idbatch adds only
``IDBATCH_S3_ENDPOINT_URL`` for S3-compatible stores, which also switches to path-style
addressing (MinIO and most on-premise stores have no per-bucket DNS names).

Error mapping (botocore → ours)::

    ClientError 404 / NoSuchKey / NoSuchBucket / NotFound   ObjectMissing
    ClientError 403 / AccessDenied                          ObjectMissing (we may not read it)
    NoCredentialsError, PartialCredentialsError             ObjectMissing (no retry brings them)
    ClientError 5xx, SlowDown, Throttling*, RequestTimeout  StorageUnavailable
    BotoCoreError (connection, read timeout, ...)          StorageUnavailable
    any other ClientError                                   ObjectMissing
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, BinaryIO

from idbatch.storage.base import ObjectInfo, ObjectMissing, StorageError, StorageUnavailable

LIST_PAGE_SIZE = 1000
STREAM_BUFFER = 1 << 20
TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "ServiceUnavailable"}
)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` → (bucket, key). Keys are taken verbatim (``#``/``?`` included)."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"s3:// URL without a bucket: {url!r}")
    return bucket, key


def s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def error_code(exc: BaseException) -> str:
    """S3's error code of a botocore ``ClientError`` (``NoSuchKey``, ``PreconditionFailed``), else ""."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def map_error(exc: Exception, what: str) -> StorageError:
    """The single place botocore failures become our classes (table in the module docstring)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if status >= 500 or code in TRANSIENT_CODES or code.startswith("Throttl"):
            return StorageUnavailable(f"S3 unavailable ({code or status}) for {what}")
        if status == 403 or code == "AccessDenied":
            return ObjectMissing(f"access denied: {what}")
        return ObjectMissing(f"object not found: {what}" if status in (404, 0) else f"S3 {code}: {what}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        # A deployment without credentials: six backed-off retries per card would only delay
        # the same answer. The card is rejected naming the cause; `retry-failed` after the fix.
        return ObjectMissing(
            f"no AWS credentials to read {what} "
            "(set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a role)"
        )
    if isinstance(exc, BotoCoreError):
        return StorageUnavailable(f"S3 unreachable ({type(exc).__name__}) for {what}")
    return StorageUnavailable(f"S3 failure ({type(exc).__name__}) for {what}")


@lru_cache(maxsize=8)
def make_client(service: str, endpoint_url: str | None) -> Any:
    """One boto3 client per (service, endpoint) per process; boto3 clients are thread-safe."""
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4" if service == "s3" else None,
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=64,
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    # A Session per client: boto3's default session is not thread-safe to create clients from.
    return boto3.session.Session().client(service, endpoint_url=endpoint_url or None, config=config)  # type: ignore[call-overload]


class _BodyReader(io.RawIOBase):
    """botocore's StreamingBody as a raw stream, so io.BufferedReader can split lines on b"\\n"."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


class S3Storage:
    scheme = "s3"

    def __init__(self, client: Any) -> None:
        self.client = client

    def iter_objects(self, prefix_url: str) -> Iterator[ObjectInfo]:
        bucket, prefix = parse_s3_url(prefix_url)
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": LIST_PAGE_SIZE}
        )
        try:
            for page in pages:  # one page (<= 1000 keys) in memory at a time
                for obj in page.get("Contents", ()):
                    key = obj["Key"]
                    yield ObjectInfo(
                        s3_url(bucket, key), key, int(obj["Size"]), obj.get("ETag", "").strip('"')
                    )
        except StorageError:
            raise
        except Exception as exc:
            raise map_error(exc, prefix_url) from exc

    def head(self, url: str) -> ObjectInfo:
        return self._head(url)[0]

    def _head(self, url: str) -> tuple[ObjectInfo, dict[str, str]]:
        bucket, key = parse_s3_url(url)
        try:
            meta = self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise map_error(exc, _name(key)) from exc
        info = ObjectInfo(url, key, int(meta["ContentLength"]), str(meta.get("ETag", "")).strip('"'))
        return info, {str(k): str(v) for k, v in (meta.get("Metadata") or {}).items()}

    def open(self, url: str) -> BinaryIO:
        bucket, key = parse_s3_url(url)
        try:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as exc:
            raise map_error(exc, _name(key)) from exc
        return io.BufferedReader(_BodyReader(body), STREAM_BUFFER)

    def read(self, url: str, max_bytes: int) -> bytes:
        return self.read_object(url, max_bytes)[0]

    def read_object(self, url: str, max_bytes: int, etag: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The object's bytes and its user metadata (``x-amz-meta-*`` as boto3 names them:
        the prefix off, lower case), from the HEAD that is sent first anyway.

        ``etag``: the version an upload event named. Another version there now (the key
        was overwritten since) raises ObjectMissing saying so, from the HEAD, and the GET
        asks ``If-Match`` too, so a write between the two cannot slip in either: a card is
        never paid for on bytes other than those its record names.
        """
        info, metadata = self._head(url)  # HEAD first: never download what we would refuse anyway
        bucket, key = parse_s3_url(url)
        if etag and info.etag and info.etag != etag:
            raise ObjectMissing(_changed(key, etag))
        if info.size > max_bytes:
            raise ValueError(f"image is {info.size} bytes, over the {max_bytes}-byte limit")
        pinned = {"IfMatch": f'"{etag}"'} if etag else {}
        try:
            response = self.client.get_object(Bucket=bucket, Key=key, **pinned)
            # read at most one byte more than allowed: the object may have grown since HEAD
            with response["Body"] as body:
                data: bytes = body.read(max_bytes + 1)
        except Exception as exc:
            if etag and error_code(exc) == "PreconditionFailed":
                raise ObjectMissing(_changed(key, etag)) from exc
            raise map_error(exc, _name(key)) from exc
        return data, metadata

    def fetch_url(self, url: str, ttl_s: int) -> str:
        bucket, key = parse_s3_url(url)
        presigned: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_s
        )
        return presigned

    def join(self, base_url: str, relative: str) -> str:
        """Resolve a manifest's relative image path inside the manifest's bucket folder.

        Absolute paths, ``file://`` and ``..`` are refused: a manifest read from S3 must
        never make a worker open one of its own local files.
        """
        bucket, key = parse_s3_url(base_url)
        if relative.startswith(("/", "\\", "file:")) or (len(relative) > 1 and relative[1] == ":"):
            raise ValueError("a manifest in S3 may name images by relative key, s3:// or https:// only")
        parts = relative.replace("\\", "/").split("/")
        if ".." in parts:
            raise ValueError("'..' is not allowed in an image path of a manifest in S3")
        folder = posixpath.dirname(key)
        return s3_url(bucket, posixpath.join(folder, *[p for p in parts if p not in ("", ".")]))


def _name(key: str) -> str:
    """The last path segment: object names may embed a customer reference, never log whole keys."""
    return key.rsplit("/", 1)[-1]


def _changed(key: str, etag: str) -> str:
    return (
        f"object changed since its upload event: {_name(key)} is no longer the version the"
        f" event named (ETag {etag[:16]}); upload it again as a new card to verify it"
    )
