"""Fetching ``image_url`` the way a provider's downloader does: bounded size and time."""

from __future__ import annotations

import httpx

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024


class DownloadError(Exception):
    pass


async def download(client: httpx.AsyncClient, url: str) -> bytes:
    try:
        async with client.stream("GET", url, timeout=10.0) as response:
            if response.status_code != 200:
                raise DownloadError(f"HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise DownloadError("too large")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise DownloadError(type(exc).__name__) from exc
