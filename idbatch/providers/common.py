"""Plumbing every adapter shares: one timed HTTP send, image hand-off, code lookup.

Kept free of vendor knowledge: the vendor tables live at the top of each adapter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from idbatch.providers import errors, limits
from idbatch.providers.base import ImageSource

ErrorClass = type[errors.ProviderError]


def send(client: httpx.Client, url: str, *, side: str, **kwargs: Any) -> tuple[httpx.Response, float]:
    """POST once; transport failures become ``Unavailable`` (the request may not have run)."""
    started = time.perf_counter()
    try:
        response = client.post(url, **kwargs)
    except httpx.TimeoutException as exc:
        # Connect and pool timeouts: nothing was sent. A read (or write) timeout: the request
        # may have been answered, and billed, after we stopped waiting.
        sent = isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout)
        raise errors.Unavailable(f"timeout: {type(exc).__name__}", side=side, maybe_billed=sent) from exc
    except httpx.TransportError as exc:
        sent = isinstance(exc, httpx.ReadError | httpx.RemoteProtocolError | httpx.WriteError)
        raise errors.Unavailable(
            f"transport error: {type(exc).__name__}", side=side, maybe_billed=sent
        ) from exc
    return response, (time.perf_counter() - started) * 1000


def lookup(table: dict[str, ErrorClass], code: str, default: ErrorClass = errors.Unavailable) -> ErrorClass:
    """Exact code, else the nearest ``Family.*`` wildcard row, else ``default``.

    An undocumented code defaults to ``Unavailable``: retried a bounded number of times and
    then failed, which is safer than rejecting an item or blocking an account on a guess.
    """
    if code in table:
        return table[code]
    parts = code.split(".")
    while parts:
        wildcard = ".".join(parts) + ".*"
        if wildcard in table:
            return table[wildcard]
        parts.pop()
    return default


def choose_handoff(
    source: ImageSource, preferred: str, image_limits: limits.ImageLimits, *, side: str
) -> tuple[str, str | bytes]:
    """``("url", url)`` or ``("inline", prepared bytes)`` (sent base64-encoded) for one image.

    Inline needs the bytes (local files, S3 objects); a manifest URL has none here, so it
    is handed over as a URL whatever the preference. Bytes are checked against the
    provider's limits (and shrunk if that keeps them valid) before anything is sent.
    """
    if source.load is not None and (preferred == "inline" or source.url is None):
        try:
            prepared = limits.prepare(source.load(), image_limits)
        except errors.ItemRejected as exc:
            raise errors.ItemRejected(f"{side} image: {exc.message}", side=side) from exc
        return "inline", prepared.data
    if source.url is not None:
        return "url", source.url
    raise errors.ItemRejected(f"{side} image: neither bytes nor a URL can be handed over", side=side)


@contextmanager
def handing_off(handoff: str) -> Iterator[None]:
    """A provider error raised while sending records how the image was handed over."""
    try:
        yield
    except errors.ProviderError as exc:
        if exc.handoff is None:
            exc.handoff = handoff
        raise
