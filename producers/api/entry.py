"""The Celery-native entry: ``idbatch.submit``, for services that already speak Celery.

Another service's app calls::

    app.send_task("idbatch.submit", kwargs={
        "tenant": "acme", "idempotency_key": "order-42",
        "card": {"external_ref": "order-42", "front_image": "s3://acme-cards/42-front.jpg"},
        "provider": None, "config": {}, "callback_url": "https://acme.example/hooks"})

on the queue ``IDBATCH_QUEUE`` of the same broker. The broker is the trust boundary (no
API key: whoever may publish there is trusted to name its tenant). The card goes through
the same validation and ingest path as ``POST /v1/verifications``; the same idempotency
key replays (nothing new is written), another card under a used key is refused and
logged. There is no result backend: the answer comes by webhook (``verification.finished``)
or from ``GET /v1/submissions/{key}?source=celery`` (the job id) and then
``GET /v1/verifications/{id}``.

Registered on the dispatch app by name; ``workers.celery_app`` lists this module in its
``include`` so every worker process serves it.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from pydantic import ValidationError
from sqlalchemy import select

from db.models_api import Tenant
from db.session import session_scope
from db.tenant_accounts import account_pairs
from db.tenants import Principal, claim_idempotency_key, complete_idempotency_key, release_idempotency_key
from dispatch.app import SUBMIT
from idbatch.logging import get_logger
from idbatch.settings import get_settings
from producers.api.cards import CardIn
from producers.api.service import Refused, fingerprint, submit_single

log = get_logger(__name__)


def _principal(tenant: str) -> Principal | None:
    with session_scope() as session:
        t = session.scalar(select(Tenant).where(Tenant.name == tenant))
        if t is None:
            return None
        return Principal(
            t.id,
            t.name,
            "celery",
            frozenset({"submit"}),
            tuple(t.s3_allowed or ()),
            tuple(t.providers or ()),
            t.quota_per_s,
            t.webhook_url,
            account_pairs(t.accounts),
        )


def submit_payload(
    tenant: str,
    idempotency_key: str,
    card: dict[str, Any],
    provider: str | None = None,
    config: dict[str, Any] | None = None,
    callback_url: str | None = None,
) -> dict[str, Any]:
    """The task body: what the HTTP route does, answered as a dict (logged, not returned to Redis)."""
    settings = get_settings()
    principal = _principal(tenant)
    if principal is None:
        return {"status": 404, "error": f"no tenant {tenant!r}"}
    body = {"card": card, "provider": provider, "config": config or {}, "callback_url": callback_url}
    state = claim_idempotency_key(
        principal.tenant_id,
        f"celery:{idempotency_key}",
        fingerprint("TASK", SUBMIT, body),
        settings.api_idempotency_ttl_s,
    )
    if state.outcome == "replay":
        stored = state.response or {}
        if state.status_code == 202:  # stored by the write itself: the HTTP route's answer
            return {"status": 202, "id": stored["id"], "batch_id": stored["batch_id"], "replayed": True}
        return {**stored, "replayed": True}
    if state.outcome == "conflict":
        # The twin message is running now; if it fails it releases the key, so try again
        # later rather than drop this copy (the task retries on 409).
        return {"status": 409, "error": "conflict"}
    if state.outcome == "mismatch":
        log.warning("idbatch.submit refused", tenant=tenant, reason=state.outcome)
        return {"status": 422, "error": state.outcome}
    assert state.record_id is not None
    try:
        parsed = CardIn.model_validate(card)
        done = submit_single(
            principal,
            parsed,
            settings,
            provider=provider,
            config=config or {},
            callback_url=callback_url,
            record_id=state.record_id,  # the answer is stored with the job, atomically
        )
    except ValidationError as exc:
        answer = {
            "status": 422,
            "error": "invalid card",
            "errors": [{"loc": [str(p) for p in e["loc"]], "reason": e["msg"]} for e in exc.errors()],
        }
        complete_idempotency_key(state.record_id, 422, answer)
        return answer
    except Refused as exc:
        answer = {"status": 422, "error": exc.title, "detail": exc.detail, "errors": exc.errors}
        complete_idempotency_key(state.record_id, 422, answer)
        return answer
    except BaseException:
        release_idempotency_key(state.record_id)  # the redelivered message runs afresh
        raise
    log.info("idbatch.submit accepted", tenant=tenant, job_id=done.job_ids[0])
    return {"status": 202, "id": done.job_ids[0], "batch_id": done.batch_id}


@shared_task(  # type: ignore[untyped-decorator]
    name=SUBMIT, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True, max_retries=60
)
def submit(
    self: Any,
    tenant: str,
    idempotency_key: str,
    card: dict[str, Any],
    provider: str | None = None,
    config: dict[str, Any] | None = None,
    callback_url: str | None = None,
) -> dict[str, Any]:
    """``idbatch.submit``: one card from another service's Celery app (see the module doc)."""
    answer = submit_payload(tenant, idempotency_key, card, provider, config, callback_url)
    if answer["status"] == 409:  # a duplicate of a message still running: look again soon
        raise self.retry(countdown=1)
    return answer
