"""``POST /v1/verifications`` without FastAPI's per-request machinery: the single-card hot path.

Profiled (``bench/profile_api.py``), once the database work was cut down, half of a single
card's CPU in the API process was FastAPI and Starlette around it: the exception and
exit-stack middlewares, the router, dependency solving, the body read, validation by
``TypeAdapter`` and a second thread hop. This ASGI middleware sits just inside
``BodyLimit`` and answers that one route itself, with the *same* functions behind it:
``VerificationIn.model_validate_json`` on the body (pydantic-core parses and validates
in one pass), then ``submit`` (the route's own body: auth, quota, scope, Idempotency-Key,
the write) in one worker thread (its own executor, see the class), and the same
problem+json answers for every refusal.

It gives way to the FastAPI route (which stays, and still defines the OpenAPI schema)
for anything it does not handle byte for byte the same: a body that is not
``application/json`` and an Idempotency-Key FastAPI's header validation refuses.
Errors that escape (a bug, the database gone) reach the app's 500 handler as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from idbatch.logging import get_logger
from idbatch.pii import scrub
from producers.api.http import HTTPProblem, problem_response
from producers.api.schemas import VerificationIn

log = get_logger(__name__)
PATH = "/v1/verifications"


def invalid_request(errors: list[Any], prefix: tuple[str, ...] = ()) -> JSONResponse:
    """422 problem+json for schema errors (pydantic's), each with its location and reason."""
    found = [
        {"loc": [*prefix, *(str(p) for p in e.get("loc", ()))], "reason": str(e.get("msg", ""))}
        for e in errors
    ]
    return problem_response(422, "Invalid request", "the request does not match the schema", errors=found)


def add_problem_handlers(app: FastAPI) -> None:
    """Every error the app answers is problem+json (RFC 9457); a crash is a 500 saying "retry"."""

    @app.exception_handler(HTTPProblem)
    async def _problem(_: Request, exc: HTTPProblem) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_request(list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        return crash_response(exc)


def crash_response(exc: BaseException) -> JSONResponse:
    """The 500 (or 503) of an error nobody answered, logged in one line.

    Only the first line of the message, scrubbed: a pydantic ValidationError's later lines
    quote the input (``input_value=b'{...}'``, the head and tail of a request body, where
    a name or an ID number can stand), and no traceback, which would chain them in."""
    first = (str(exc).splitlines() or [""])[0]
    log.error("api request failed", error=type(exc).__name__, detail=scrub(first)[:300])
    if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.TimeoutError)):
        # The database refused a connection (seen: Postgres' max_connections reached by
        # other clients) or the pool timed out: nothing was committed for this request
        # (a single card is one transaction), so "unavailable, retry" is the truth.
        return problem_response(
            503,
            "Service unavailable",
            "the database is unreachable or at capacity; retry with the same Idempotency-Key",
            headers={"Retry-After": "1"},
        )
    return problem_response(500, "Internal error", "the request failed on our side; retry it")


class SingleCardFastPath:
    """Answers ``POST /v1/verifications`` with ``submit(request, body)``; everything else passes.

    ``submit`` runs on a ``ThreadPoolExecutor`` of its own (``threads`` wide), not through
    anyio's ``run_in_threadpool``: anyio's hop (capacity limiter, cancel scope, its
    worker-thread bookkeeping and clock reads) was ~11 % of a single card's samples, and
    ``loop.run_in_executor`` does the same hop with a queue put and one wake-up. The
    FastAPI routes keep anyio's pool (also ``threads`` wide), so under mixed load a
    process may run up to twice ``threads`` database calls at once (its pool has
    ``worker_concurrency + 2``).
    """

    def __init__(
        self, app: ASGIApp, submit: Callable[[Request, VerificationIn], Response], threads: int = 8
    ) -> None:
        self.app, self.submit = app, submit
        self._executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="single-card")

    @staticmethod
    def _ours(scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            return False
        content_type, key = b"", None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"idempotency-key":
                key = value
        if not content_type.lower().startswith(b"application/json"):
            return False  # FastAPI's own answer for other media types
        return key is None or 1 <= len(key.decode("latin-1")) <= 255

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._ours(scope):
            await self.app(scope, receive, send)
            return
        response: Response
        try:
            chunks: list[bytes] = []
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                more = bool(message.get("more_body", False))
        except StarletteHTTPException as exc:  # BodyLimit's 413 while streaming
            response = problem_response(exc.status_code, str(exc.detail))
        else:
            try:
                response = await self._answer(scope, receive, b"".join(chunks))
            except Exception as exc:  # noqa: BLE001 - this middleware is outside FastAPI's handlers
                response = crash_response(exc)
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, raw: bytes) -> Response:
        try:
            body = VerificationIn.model_validate_json(raw)
        except ValidationError:
            # The refusal path only: validate again as FastAPI does (json.loads, then the
            # model in Python mode), so the 422 names the same locations in the same words.
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError):  # RecursionError: nested ~1,000 deep
                return self._not_json(raw)
            try:
                body = VerificationIn.model_validate(data, from_attributes=True)  # as FastAPI
            except ValidationError as exc:
                return invalid_request(exc.errors(), ("body",))
        request: Any = Request(scope, receive)
        # The context goes along, as run_in_threadpool's does (log context variables).
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, context.run, self.submit, request, body)
        except HTTPProblem as exc:
            return exc.response()

    @staticmethod
    def _not_json(raw: bytes) -> Response:
        """FastAPI's answer to a body that is not JSON: the position where decoding failed."""
        try:
            json.loads(raw)
        except json.JSONDecodeError as exc:
            return invalid_request([{"loc": (exc.pos,), "msg": "JSON decode error"}], ("body",))
        except ValueError:  # not UTF-8 either
            pass
        except RecursionError:
            return invalid_request([{"loc": (), "msg": "JSON nested too deeply"}], ("body",))
        return invalid_request([{"loc": (), "msg": "JSON decode error"}], ("body",))
