"""Local files behind the storage seam (the embedded default and plain manifests)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from idbatch.storage.base import ObjectInfo, ObjectMissing


def _path(url: str) -> Path:
    return Path(url[len("file://") :] if url.startswith("file://") else url)


class LocalStorage:
    scheme = "file"

    def iter_objects(self, prefix_url: str) -> Iterator[ObjectInfo]:
        root = _path(prefix_url)
        # os.walk holds one directory at a time (sorted within it; S3's global key order
        # is not reproduced, so prefix pairing is for S3 listings).
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                stat = path.stat()
                yield ObjectInfo(
                    url=str(path),
                    key=path.as_posix(),
                    size=stat.st_size,
                    etag=f"{stat.st_mtime_ns:x}-{stat.st_size:x}",
                )

    def head(self, url: str) -> ObjectInfo:
        path = _path(url)
        try:
            stat = path.stat()
        except OSError as exc:
            raise ObjectMissing(f"file not found: {path.name}") from exc
        return ObjectInfo(str(path), path.as_posix(), stat.st_size, f"{stat.st_mtime_ns:x}-{stat.st_size:x}")

    def open(self, url: str) -> BinaryIO:
        try:
            return _path(url).open("rb")
        except OSError as exc:
            raise ObjectMissing(f"file not readable: {_path(url).name}") from exc

    def read(self, url: str, max_bytes: int) -> bytes:
        info = self.head(url)
        if info.size > max_bytes:
            raise ValueError(f"image is {info.size} bytes, over the {max_bytes}-byte limit")
        with self.open(url) as fh:
            return fh.read(max_bytes + 1)

    def fetch_url(self, url: str, ttl_s: int) -> str | None:
        return None  # local files reach providers through the image gateway (idbatch.gateway)

    def join(self, base_url: str, relative: str) -> str:
        return str(_path(base_url).parent / relative)
