"""HTTP plumbing of the API: RFC 9457 problems, body limits, Idempotency-Key.

- Errors are ``application/problem+json`` (RFC 9457) with ``type``, ``title``, ``status``,
  ``detail`` and, for refused cards, ``errors`` naming each card and field.
- Auth (401) and per-tenant quotas (429 with ``Retry-After``): ``producers.api.gate``.
- Body limit: a declared ``Content-Length`` over ``api_max_body_bytes`` is 413 before a
  byte is read; a chunked body is counted as it streams and cut off at the limit.
- Idempotency-Key (IETF httpapi draft): the key is kept per tenant for
  ``api_idempotency_ttl_s``; the same key and body replay the stored first response
  (``Idempotent-Replayed: true``), the same key with another body is 422, a request while
  the first is still running is 409 (a single card's twin waits for the first's commit
  and replays it: the key is taken in the card's transaction). A 5xx is not stored: the
  retry runs afresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.api_writes import KeyClaim, KeyTaken
from db.tenants import (
    KeyState,
    Principal,
    claim_idempotency_key,
    complete_idempotency_key,
    release_idempotency_key,
)
from idbatch.logging import get_logger
from idbatch.settings import Settings
from producers.api.service import fingerprint

log = get_logger(__name__)
PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://idbatch.dev/problems/"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


def problem_response(
    status: int,
    title: str,
    detail: str = "",
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    slug: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class HTTPProblem(Exception):
    """Raised anywhere in a request; rendered as problem+json by the app's handler."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.errors, self.headers = (
            status,
            title,
            detail,
            errors,
            headers,
        )

    def response(self) -> JSONResponse:
        return problem_response(
            self.status, self.title, self.detail, errors=self.errors, headers=self.headers
        )


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: each code answers problem+json."""
    titles = {
        400: "Bad request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not found",
        409: "Conflict",
        413: "Content too large",
        415: "Unsupported media type",
        422: "Unprocessable content",
        429: "Too many requests",
    }
    return {
        c: {"description": titles.get(c, "Problem"), "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}}}
        for c in codes
    }


def require(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise HTTPProblem(403, "Forbidden", f"this key lacks the {scope!r} scope")


def _settled(state: KeyState) -> JSONResponse | None:
    """The answer a key's earlier request decides (replay, 409, 422), or None if ``claimed``."""
    if state.outcome == "mismatch":
        raise HTTPProblem(
            422, "Idempotency key reused", "this Idempotency-Key was used with another request body"
        )
    if state.outcome == "conflict":
        raise HTTPProblem(409, "Conflict", "a request with this Idempotency-Key is still being processed")
    if state.outcome == "replay":
        stored = state.response or {}
        media = PROBLEM if (state.status_code or 200) >= 400 else "application/json"
        return JSONResponse(
            stored,
            status_code=state.status_code or 200,
            media_type=media,
            headers={"Idempotent-Replayed": "true"},
        )
    return None


def idempotent(
    request: Request,
    principal: Principal,
    body: Any,
    settings: Settings,
    handle: Callable[[Any], tuple[int, dict[str, Any]]],
    *,
    stores_itself: bool = False,
) -> JSONResponse:
    """Run ``handle`` once per (tenant, Idempotency-Key); store and replay its answer.

    ``handle`` gets the key's record id. With ``stores_itself`` (a single card) it first
    gets a ``KeyClaim`` and takes the key inside its own write's transaction, answered
    (one transaction for key and card); if the key is taken (``KeyTaken``, the write rolled
    back) the key's record decides as usual, and a record gone meanwhile is claimed and
    ``handle`` runs again with its id. A refusal before any write (4xx) is then stored
    under the key like any other answer.
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        status, payload = handle(None)
        return JSONResponse(payload, status_code=status)
    if not 1 <= len(key) <= 255:
        raise HTTPProblem(400, "Bad request", "Idempotency-Key must be 1 to 255 characters")
    print_ = fingerprint(request.method, request.url.path, body)
    ttl = settings.api_idempotency_ttl_s
    refused: HTTPProblem | None = None
    if stores_itself:
        try:
            status, payload = handle(KeyClaim(principal.tenant_id, key, print_, ttl))
            return JSONResponse(payload, status_code=status)
        except KeyTaken:
            pass  # the key's record answers below
        except HTTPProblem as exc:
            if exc.status in (409, 429) or exc.status >= 500:
                raise
            refused = exc  # stored under the key below, unless the key answers otherwise
    state = claim_idempotency_key(principal.tenant_id, key, print_, ttl)
    settled = _settled(state)
    if settled is not None:
        return settled
    assert state.record_id is not None
    try:
        if refused is not None:
            raise refused
        status, payload = handle(state.record_id)
    except HTTPProblem as exc:
        if exc.status in (409, 429) or exc.status >= 500:
            release_idempotency_key(state.record_id)
        else:
            complete_idempotency_key(state.record_id, exc.status, json.loads(bytes(exc.response().body)))
        raise
    except BaseException:
        release_idempotency_key(state.record_id)
        raise
    if not stores_itself:
        complete_idempotency_key(state.record_id, status, payload)
    return JSONResponse(payload, status_code=status)


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await problem_response(413, "Content too large", f"the body limit is {self.limit} bytes")(
                scope, receive, send
            )
            return
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Starlette's own exception: FastAPI's body parsing re-raises it as it is
                    # (anything else would become a 400), and the app renders it as a problem.
                    raise StarletteHTTPException(413, "Content too large")
            return message

        await self.app(scope, counting, send)
