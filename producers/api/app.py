"""The HTTP API (FastAPI, OpenAPI 3 at ``/openapi.json``): ``idbatch api`` serves it.

Routes (README "Jobs from other services" has a curl walk-through):

- ``POST /v1/verifications``: one card → 202 ``{id, batch_id, status}``;
  ``GET /v1/verifications/{id}`` (``?wait=30`` long-polls until terminal).
- ``POST /v1/batches``: many cards inline (JSON) or a manifest by reference (``s3://``);
  ``POST /v1/batches/ndjson``: one card per line; ``GET /v1/batches/{id}``,
  ``GET /v1/batches/{id}/results`` (cursor paged), ``POST /v1/batches/{id}/cancel``.

A card refused as a whole request (schema, provider, callback) writes nothing; in a batch
a card with a bad field becomes a rejected job naming the card, field and fault, like a
bad CSV row. Another tenant's ids answer 404, never 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import inspect
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationError

from db import api_reads
from db.api_writes import KeyClaim
from db.session import session_scope, warm_pool
from dispatch.publish import Publisher, publish_jobs
from idbatch.logging import get_logger
from idbatch.settings import Settings, get_settings
from producers.api.cards import CardIn, ref_of
from producers.api.fastpath import SingleCardFastPath, add_problem_handlers
from producers.api.gate import Gate, principal_of
from producers.api.http import BodyLimit, HTTPProblem, idempotent, problem_responses, require
from producers.api.linger import LingeringPublisher
from producers.api.lookup import add_lookup
from producers.api.schemas import (
    BatchIn,
    BatchOut,
    BatchSubmitted,
    Cancelled,
    ResultsPage,
    Submitted,
    VerificationIn,
    VerificationOut,
)
from producers.api.service import (
    Accepted,
    Refused,
    single_answer,
    submit_cards,
    submit_manifest_ref,
    submit_single,
)
from producers.csv_manifest import RowError

log = get_logger(__name__)


ID = Annotated[int, Field(ge=1, le=2**62)]
# Declared so the schema documents it; read from the request by ``idempotent``.
IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="the same key and body replay the first answer (IETF httpapi draft)",
    ),
]
AUTHED = (401, 403, 404, 429)


def _refused(exc: Refused) -> HTTPProblem:
    return HTTPProblem(exc.status, exc.title.capitalize(), exc.detail, errors=exc.errors)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    gate = Gate.for_settings(settings)
    threads = max(1, min(settings.api_threads, settings.worker_concurrency))  # per pool, see lifespan
    publisher: Publisher = (
        LingeringPublisher(settings.api_publish_linger_ms / 1000)
        if settings.api_publish_linger_ms > 0
        else publish_jobs
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Sync routes run in anyio's thread pool (40 threads by default); each holds one
        # database connection, so never run more at once than the pool has connections,
        # and not many more than keep the core busy (more threads fight over the GIL).
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        await run_in_threadpool(warm_pool, threads)  # connected before the first request
        # Everything imported and built so far lives as long as the process: move it out
        # of the collector's sight, so a full collection (a latency spike of tens of ms
        # under load) walks only what requests allocate.
        gc.collect()
        gc.freeze()
        # Young collections every 700 allocations promote in-flight requests to the old
        # generations, where only full collections (~75 ms CPU under load) reclaim them.
        # A larger young generation halves the collections' CPU (docs/api.md).
        if settings.api_gc_young > 0:
            gc.set_threshold(settings.api_gc_young, *gc.get_threshold()[1:])
        try:
            yield
        finally:
            if isinstance(publisher, LingeringPublisher):
                publisher.close()

    # Recent FastAPI asks OpenTelemetry per request whether it is configured (2.5 % of a
    # single card's samples); the API does not trace.
    quiet: dict[str, Any] = {}
    if not settings.otel_enabled and "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        quiet["telemetry"] = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(
        title="idbatch",
        version="1",
        description="Bulk ID-card verification for other services.",
        lifespan=lifespan,
        **quiet,
    )

    add_problem_handlers(app)

    def auth(request: Request, scope: str) -> Any:
        principal = principal_of(request.headers.get("authorization", ""), gate)
        require(principal, scope)
        return principal

    def submit_verification(request: Request, body: VerificationIn) -> JSONResponse:
        """The single-card route's body: served by the FastAPI route and ``SingleCardFastPath``."""
        principal = auth(request, "submit")

        def handle(key: int | KeyClaim | None) -> tuple[int, dict[str, Any]]:
            card = CardIn.model_validate(body.model_dump(include=set(CardIn.model_fields)))
            try:
                done = submit_single(
                    principal,
                    card,
                    settings,
                    provider=body.provider,
                    config=body.config,
                    callback_url=body.callback_url,
                    record_id=key if isinstance(key, int) else None,
                    claim=key if isinstance(key, KeyClaim) else None,
                    publish=publisher,
                )
            except Refused as exc:
                raise _refused(exc) from exc
            return 202, single_answer(done.batch_id, done.job_ids[0])

        return idempotent(
            request, principal, body.model_dump(mode="json"), settings, handle, stores_itself=True
        )

    @app.post(
        "/v1/verifications",
        status_code=202,
        response_model=Submitted,
        responses=problem_responses(400, 409, 413, 422, *AUTHED),
    )
    def post_verification(
        request: Request, body: VerificationIn, idempotency_key: IdemKey = None
    ) -> JSONResponse:
        # Normally answered by SingleCardFastPath before it gets here (same function).
        return submit_verification(request, body)

    @app.get(
        "/v1/verifications/{job_id}", response_model=VerificationOut, responses=problem_responses(*AUTHED)
    )
    async def get_verification(
        request: Request,
        job_id: ID,
        wait: Annotated[float, Query(ge=0, le=3600, description="long-poll up to this many seconds")] = 0,
    ) -> Any:
        principal = await run_in_threadpool(auth, request, "read")
        deadline = time.monotonic() + min(wait, settings.api_wait_max_s)

        def is_terminal() -> bool | None:
            with session_scope() as session:
                return api_reads.job_terminal(session, principal.tenant_id, job_id)

        while True:
            terminal = await run_in_threadpool(is_terminal)
            if terminal is None:
                raise HTTPProblem(404, "Not found", f"no verification {job_id}")
            if terminal or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.25)
        reveal = "reveal" in principal.scopes and request.query_params.get("reveal") == "true"

        def view() -> dict[str, Any] | None:
            with session_scope() as session:
                return api_reads.job_view(session, principal.tenant_id, job_id, reveal=reveal)

        found = await run_in_threadpool(view)
        if found is None:
            raise HTTPProblem(404, "Not found", f"no verification {job_id}")
        return found

    def _batch_answer(done: Accepted) -> tuple[int, dict[str, Any]]:
        return 202, {"id": done.batch_id, "rows": done.rows, "queued": done.queued, "rejected": done.rejected}

    @app.post(
        "/v1/batches",
        status_code=202,
        response_model=BatchSubmitted,
        responses=problem_responses(400, 409, 413, 422, *AUTHED),
    )
    def post_batch(request: Request, body: BatchIn, idempotency_key: IdemKey = None) -> JSONResponse:
        principal = auth(request, "submit")
        if (body.cards is None) == (body.manifest is None):
            raise HTTPProblem(422, "Invalid request", "give exactly one of cards or manifest")
        if body.cards is not None and len(body.cards) > settings.api_max_cards:
            raise HTTPProblem(413, "Content too large", f"at most {settings.api_max_cards} cards per request")

        def handle(record_id: int | None) -> tuple[int, dict[str, Any]]:
            try:
                if body.manifest is not None:
                    return _batch_answer(
                        submit_manifest_ref(
                            principal,
                            body.manifest,
                            settings,
                            provider=body.provider,
                            config=body.config,
                            callback_url=body.callback_url,
                            progress_step=body.progress_step,
                        )
                    )
                return _batch_answer(
                    submit_cards(
                        principal,
                        body.cards or [],
                        settings,
                        provider=body.provider,
                        config=body.config,
                        callback_url=body.callback_url,
                        progress_step=body.progress_step,
                    )
                )
            except Refused as exc:
                raise _refused(exc) from exc

        return idempotent(request, principal, body.model_dump(mode="json"), settings, handle)

    @app.post(
        "/v1/batches/ndjson",
        status_code=202,
        response_model=BatchSubmitted,
        responses=problem_responses(400, 409, 413, 415, 422, *AUTHED),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-ndjson": {
                        "schema": {"type": "string", "description": "one card object per line"}
                    }
                },
            }
        },
    )
    async def post_batch_ndjson(
        request: Request,
        provider: Annotated[str | None, Query(max_length=32)] = None,
        callback_url: Annotated[str | None, Query(max_length=2048)] = None,
        progress_step: Annotated[int | None, Query(ge=1)] = None,
        idempotency_key: IdemKey = None,
    ) -> JSONResponse:
        principal = await run_in_threadpool(auth, request, "submit")
        if not request.headers.get("content-type", "").startswith("application/x-ndjson"):
            raise HTTPProblem(415, "Unsupported media type", "send application/x-ndjson")
        # The body streams into a spooled file (memory holds at most 1 MiB of it) while it
        # is hashed and its lines counted; the cards are then read back one line at a time
        # into the ingest's chunks, so a 10,000-card body is never a list in memory.
        spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 - closed below
        digest = hashlib.sha256()
        lines, last = 0, b"\n"
        async for chunk in request.stream():  # bounded by BodyLimit
            spool.write(chunk)
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:] or last
        if lines + (last != b"\n") > settings.api_max_cards:  # a last line without its newline counts
            spool.close()
            raise HTTPProblem(413, "Content too large", f"at most {settings.api_max_cards} cards per request")
        spool.seek(0)

        def cards() -> Iterator[CardIn | RowError]:
            n = 0
            for line in spool:
                if not line.strip():
                    continue
                n += 1
                try:
                    yield CardIn.model_validate_json(line)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in first.get("loc", ())) or "line"
                    yield RowError(
                        n, n, f"card {n} (line {n}), field {where}: {first.get('msg')}", ref_of(line)
                    )

        body = {
            "provider": provider,
            "callback_url": callback_url,
            "progress_step": progress_step,
            "body_sha256": digest.hexdigest(),
        }

        def handle(record_id: int | None) -> tuple[int, dict[str, Any]]:
            try:
                return _batch_answer(
                    submit_cards(
                        principal,
                        cards(),
                        settings,
                        provider=provider,
                        callback_url=callback_url,
                        progress_step=progress_step,
                    )
                )
            except Refused as exc:
                raise _refused(exc) from exc

        try:
            return await run_in_threadpool(idempotent, request, principal, body, settings, handle)
        finally:
            spool.close()

    @app.get("/v1/batches/{batch_id}", response_model=BatchOut, responses=problem_responses(*AUTHED))
    def get_batch(request: Request, batch_id: ID) -> Any:
        principal = auth(request, "read")
        with session_scope() as session:
            found = api_reads.batch_view(session, principal.tenant_id, batch_id)
        if found is None:
            raise HTTPProblem(404, "Not found", f"no batch {batch_id}")
        return found

    @app.get(
        "/v1/batches/{batch_id}/results", response_model=ResultsPage, responses=problem_responses(*AUTHED)
    )
    def get_results(
        request: Request,
        batch_id: ID,
        cursor: Annotated[int, Query(ge=0, le=2**62, description="next_cursor of the previous page")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        principal = auth(request, "read")
        reveal = "reveal" in principal.scopes and request.query_params.get("reveal") == "true"
        with session_scope() as session:
            page = api_reads.batch_results(
                session, principal.tenant_id, batch_id, after=cursor, limit=limit, reveal=reveal
            )
        if page is None:
            raise HTTPProblem(404, "Not found", f"no batch {batch_id}")
        return {"items": page[0], "next_cursor": page[1]}

    @app.post(
        "/v1/batches/{batch_id}/cancel",
        response_model=Cancelled,
        responses=problem_responses(409, 422, *AUTHED),
    )
    def cancel_batch(request: Request, batch_id: ID, idempotency_key: IdemKey = None) -> JSONResponse:
        principal = auth(request, "submit")

        def handle(record_id: int | None) -> tuple[int, dict[str, Any]]:
            with session_scope() as session:
                n = api_reads.cancel_batch(session, principal.tenant_id, batch_id)
            if n is None:
                raise HTTPProblem(404, "Not found", f"no batch {batch_id}")
            return 200, {"id": batch_id, "cancelled_jobs": n}

        return idempotent(request, principal, {"batch": batch_id}, settings, handle)

    add_lookup(app, auth)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if settings.api_fast_path:
        app.add_middleware(SingleCardFastPath, submit=submit_verification, threads=threads)  # in BodyLimit
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    return app


def asgi() -> FastAPI:
    """``uvicorn producers.api.app:asgi --factory`` (what ``idbatch api`` runs)."""
    return create_app()
