"""Submitting cards for a tenant: the one code path behind HTTP and the Celery entry.

Everything goes through ``producers.submit.ingest_rows`` (the CSV and S3 producers' ingest:
storable-row checks, COPY on Postgres, the reference idempotency key, publish after
commit). A batch request makes a batch of kind ``api``; a single verification is an
``adhoc`` batch of one job: jobs inherit the tenant through their batch, and the batch's
``finished_at`` (stamped by the sweeper) is what a ``verification.finished`` webhook is
derived from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from db.api_writes import KeyClaim, ingest_single
from db.tenants import Principal, create_tenant_batch
from db.webhooks import BATCH_FINISHED, VERIFICATION_FINISHED
from dispatch.publish import Publisher, default_publisher, publish_jobs
from idbatch import images
from idbatch.domain import BatchKind, JobStatus
from idbatch.providers import ConfigError, check_config
from idbatch.settings import Settings
from idbatch.storage import ObjectMissing, storage_for
from producers.api.cards import CardIn, batch_source, row_problem, to_row
from producers.csv_manifest import ManifestError, ManifestRow, RowError, read_manifest
from producers.s3 import resolve_refs
from producers.submit import _job_values, ingest_rows, storable_rows


def fingerprint(method: str, path: str, body: Any) -> str:
    """The request as far as idempotency cares: method, path and the body's canonical JSON."""
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{method} {path}\n{canon}".encode()).hexdigest()


class Refused(ValueError):
    """The request cannot be accepted; nothing was written. ``errors`` name each fault."""

    def __init__(
        self, title: str, detail: str, errors: list[dict[str, Any]] | None = None, status: int = 422
    ):
        super().__init__(detail)
        self.title, self.detail, self.errors, self.status = title, detail, errors or [], status


@dataclass
class Accepted:
    batch_id: int
    job_ids: list[int] = field(default_factory=list)
    rows: int = 0
    queued: int = 0
    rejected: int = 0


def choose_provider(
    principal: Principal, settings: Settings, provider: str | None, config: dict[str, Any]
) -> str:
    """The provider for a request: asked for, allowed to this tenant, and with a valid config."""
    chosen = provider or (principal.providers[0] if principal.providers else settings.provider)
    allowed = principal.providers or (settings.provider,)
    if chosen not in allowed:
        raise Refused(
            "provider not allowed",
            f"provider {chosen!r} is not enabled for this tenant",
            [{"field": "provider", "reason": f"allowed: {', '.join(allowed)}"}],
        )
    try:
        check_config(chosen, config)
    except ConfigError as exc:
        raise Refused("invalid config", str(exc), [{"field": "config", "reason": str(exc)}]) from exc
    return chosen


def check_callback(url: str | None, principal: Principal, settings: Settings) -> str | None:
    """The callback URL of a request (or the tenant's), refused at once if it points inside."""
    target = url or principal.webhook_url
    if target is None:
        return None
    if not target.startswith(("https://", "http://")):
        raise Refused("invalid callback", "callback_url must be an http(s) URL", [{"field": "callback_url"}])
    try:
        images.check_url(target, settings.allowed_private_hosts, resolve=False)
    except images.ImageRefError as exc:
        raise Refused(
            "invalid callback", f"callback_url refused: {exc}", [{"field": "callback_url"}]
        ) from exc
    return target


def submit_single(
    principal: Principal,
    card: CardIn,
    settings: Settings,
    *,
    provider: str | None = None,
    config: dict[str, Any] | None = None,
    callback_url: str | None = None,
    record_id: int | None = None,
    claim: KeyClaim | None = None,
    publish: Publisher | None = None,
) -> Accepted:
    """One card → an adhoc batch of one queued job. A bad card is refused whole (422).

    The row is made by the ingest's own row builder and storable-row check and inserted
    by its inserter, in one transaction with its batch and, when ``record_id`` is given,
    the Idempotency-Key's stored answer (``db.api_writes.ingest_single``), or with
    ``claim`` the key itself (``db.api_writes.KeyTaken`` if it is taken): a single card is one
    transaction (the key lookup is cached) instead of the bulk loop's five. ``publish``
    gets the job id after the commit: the HTTP API passes its coalescing publisher
    (``producers.api.linger``), the Celery entry publishes at once.
    """
    config = config or {}
    chosen = choose_provider(principal, settings, provider, config)
    callback = check_callback(callback_url, principal, settings)
    row = to_row(card, 1, settings, principal.s3_allowed)
    if isinstance(row, RowError):
        raise Refused("invalid card", row.reason, [row_problem(row)])
    (values,) = storable_rows([_job_values(0, row, chosen, config)])
    if values["status"] != JobStatus.QUEUED:
        reason = str(values.get("last_error") or "card cannot be stored")
        raise Refused(
            "invalid card", reason, [{"card": 1, "external_ref": card.external_ref, "reason": reason}]
        )
    batch_id, job_id, _ = ingest_single(
        principal.tenant_id,
        source=batch_source(settings, principal.tenant),
        kind=BatchKind.ADHOC,
        provider=chosen,
        config=config,
        values=values,
        callback_url=callback,
        event=VERIFICATION_FINISHED,
        record_id=record_id,
        claim=claim,
        answer=single_answer,
        on_commit=publish or publish_jobs,
        accounts=principal.accounts_for(chosen),
    )
    return Accepted(batch_id, [job_id], 1, 1, 0)


def single_answer(batch_id: int, job_id: int) -> dict[str, Any]:
    """The 202 body of a single verification (stored for Idempotency-Key replays)."""
    return {"id": job_id, "batch_id": batch_id, "status": "queued"}


def submit_cards(
    principal: Principal,
    cards: Iterable[CardIn | RowError],
    settings: Settings,
    *,
    provider: str | None = None,
    config: dict[str, Any] | None = None,
    callback_url: str | None = None,
    progress_step: int | None = None,
) -> Accepted:
    """Many cards → one batch; a card with a bad field becomes a rejected job naming it.

    Every card is one job (as every CSV row is), so counts always add up; a request that
    is not valid as a whole (schema, provider, callback) is refused before any row exists.
    """
    config = config or {}
    chosen = choose_provider(principal, settings, provider, config)
    callback = check_callback(callback_url, principal, settings)
    batch_id = create_tenant_batch(
        principal.tenant_id,
        source=batch_source(settings, principal.tenant),
        kind=BatchKind.API,
        provider=chosen,
        config=config,
        callback_url=callback,
        event=BATCH_FINISHED,
        progress_step=progress_step,
        accounts=principal.accounts_for(chosen),
    )

    def rows() -> Iterator[ManifestRow | RowError]:
        for n, card in enumerate(cards, start=1):
            yield card if isinstance(card, RowError) else to_row(card, n, settings, principal.s3_allowed)

    result = ingest_rows(batch_id, rows(), chosen, config, publish=default_publisher(settings.ingest_publish))
    return Accepted(batch_id, [], result.rows, result.queued, result.rejected)


def submit_manifest_ref(
    principal: Principal,
    url: str,
    settings: Settings,
    *,
    provider: str | None = None,
    config: dict[str, Any] | None = None,
    callback_url: str | None = None,
    progress_step: int | None = None,
) -> Accepted:
    """A CSV manifest by reference (``s3://bucket/key.csv`` in one of the tenant's buckets)."""
    from idbatch.storage import s3_ref_allowed

    if not url.startswith("s3://") or not s3_ref_allowed(url, principal.s3_allowed):
        raise Refused(
            "manifest not allowed",
            "manifest must be s3:// in one of this tenant's buckets",
            [{"field": "manifest"}],
        )
    config = config or {}
    chosen = choose_provider(principal, settings, provider, config)
    callback = check_callback(callback_url, principal, settings)
    storage = storage_for(url, settings)
    try:
        stream = storage.open(url)
        # Relative image paths resolve next to the manifest, as `idbatch submit s3://…` does.
        items = resolve_refs(
            storage,
            url,
            read_manifest(
                stream, allowed_private_hosts=settings.allowed_private_hosts, s3_allowed=principal.s3_allowed
            ),
        )
        first = next(items, None)
    except ObjectMissing as exc:
        raise Refused(
            "manifest not found", f"manifest {url} cannot be read", [{"field": "manifest"}]
        ) from exc
    except ManifestError as exc:
        raise Refused("invalid manifest", str(exc), [{"field": "manifest", "reason": str(exc)}]) from exc
    batch_id = create_tenant_batch(
        principal.tenant_id,
        source=url,
        kind=BatchKind.API,
        provider=chosen,
        config=config,
        callback_url=callback,
        event=BATCH_FINISHED,
        progress_step=progress_step,
        accounts=principal.accounts_for(chosen),
    )

    def rows() -> Iterator[ManifestRow | RowError]:
        if first is not None:
            yield first
        yield from items

    result = ingest_rows(batch_id, rows(), chosen, config, publish=default_publisher(settings.ingest_publish))
    return Accepted(batch_id, [], result.rows, result.queued, result.rejected)
