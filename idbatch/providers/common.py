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


def _plain(client: httpx.Client) -> bool:
    """A client with nothing ``Client.send`` would add to a provider POST.

    No auth, no event hooks, no stored cookies, no base URL (Runtime's client, and the
    tests' clients over a ``MockTransport``). Anything else goes the full ``client.post``.
    """
    hooks = client.event_hooks
    return (
        type(client) is httpx.Client
        and client.auth is None
        and not hooks["request"]
        and not hooks["response"]
        and not client.cookies
        and not client.base_url.raw_host
        and hasattr(client, "_transport_for_url")
    )


def post(
    client: httpx.Client,
    url: str,
    *,
    headers: dict[str, str],
    content: bytes | None = None,
    json: Any = None,
) -> httpx.Response:
    """``client.post(url, ...)`` for a plain client, without its per-request machinery.

    The worker's hot path sends one POST per job; in the profile (issue 17) ``client.post``
    was a quarter of a job's CPU, and half of that was not the connection pool but
    ``build_request`` (merging URL, headers, cookies, params, timeout), auth and redirect
    generators, cookie extraction and bookkeeping that a provider POST never uses. This
    builds the same ``httpx.Request`` (the client's default headers, then ours replacing
    any of the same name, exactly as ``Client._merge_headers``; Host and Content-Length
    by ``Request`` itself) and hands it to the client's own transport, so connection
    pooling, proxies (``mounts``), timeouts, tracing (which wraps the transport) and
    httpx's exception mapping are the client's. Redirects were never followed (the
    client's default), so a 3xx comes back as it did. A provider's ``Set-Cookie`` is not
    stored (nor sent back on later calls, to it or any other provider): these APIs
    authenticate every request by header and have no session.
    """
    if not _plain(client):
        return client.post(url, content=content, json=json, headers=headers)
    own = {k.lower() for k in headers}
    merged = [(k, v) for k, v in client.headers.multi_items() if k.lower() not in own]
    merged.extend(headers.items())
    request = httpx.Request(
        "POST",
        url,
        content=content,
        json=json,
        headers=merged,
        extensions={"timeout": client.timeout.as_dict()},
    )
    response = client._transport_for_url(request.url).handle_request(request)
    response.request = request
    try:
        response.read()
    except BaseException:
        response.close()
        raise
    return response


def send(
    client: httpx.Client,
    url: str,
    *,
    side: str,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    json: Any = None,
) -> tuple[httpx.Response, float]:
    """POST once; transport failures become ``Unavailable`` (the request may not have run)."""
    started = time.perf_counter()
    try:
        response = post(client, url, headers=headers or {}, content=content, json=json)
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
