"""Webhook delivery: sign with Standard Webhooks, POST, log, back off; and the webhook sweep.

- ``deliver`` takes one outbox row for one attempt (a lease in Postgres, so a duplicate
  message does nothing), checks the destination against internal addresses *by resolved
  address* (``idbatch.images.check_url``, the same SSRF check image URLs get), signs the
  body with every valid tenant secret (two during a rotation: the ``webhook-signature``
  header carries both, receivers accept either), POSTs without following redirects and
  records the attempt. A failure is due again after an exponential backoff with jitter
  (``webhook_backoff_base_s`` doubling up to ``webhook_backoff_cap_s``); an event older
  than ``webhook_max_age_s`` (24 h) is ``failed`` and waits for ``idbatch webhooks
  redeliver``.
- Like job retries, a waiting delivery lives in Postgres, not in a countdown message:
  ``sweep_webhooks`` (beat task ``idbatch.webhooks.sweep``) publishes the due ones, and
  derives events from finished batches first (``db.webhooks.emit_events``).

At-least-once: a receiver may see an event twice (a worker killed after the POST and
before the log) and de-duplicates by ``webhook-id``, which never changes for an event.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time

import httpx
from celery import Celery

from db import webhooks as outbox
from db.models import utcnow
from db.tenants import purge_idempotency_keys
from dispatch.app import celery_app
from dispatch.publish import publish_webhooks
from idbatch import images
from idbatch.logging import get_logger
from idbatch.settings import Settings

log = get_logger(__name__)

_client: httpx.Client | None = None
_lock = threading.Lock()


def http_client(settings: Settings) -> httpx.Client:
    """The process's delivery client (one pool); redirects are never followed (SSRF)."""
    global _client
    with _lock:
        if _client is None:
            _client = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
        return _client


def backoff_s(attempt: int, settings: Settings, rng: random.Random | None = None) -> float:
    """Delay after failed attempt ``attempt`` (1-based): exponential, capped, equal jitter.

    Half the step is fixed so retries never bunch at zero; half is random so receivers
    coming back from an outage are not hit by every event at the same instant.
    """
    step = min(settings.webhook_backoff_cap_s, settings.webhook_backoff_base_s * 2 ** (attempt - 1))
    jitter: float = (rng or random).uniform(0, step / 2)
    return float(step / 2 + jitter)


def sign(secrets: list[str], msg_id: str, at: dt.datetime, body: str) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64>`` per secret, space separated."""
    from standardwebhooks.webhooks import Webhook

    return " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets)


def deliver(outbox_id: int, settings: Settings, client: httpx.Client | None = None) -> str:
    """One delivery attempt of one outbox row; returns what became of it."""
    now = utcnow()
    d = outbox.begin_delivery(outbox_id, now, settings.webhook_lease_s)
    if d is None:
        return "skipped"
    try:
        images.check_url(d.url, settings.allowed_private_hosts, resolve=True)
    except images.ImageRefError as exc:
        # Not retried: the destination will not become public by waiting.
        outbox.finish_delivery(
            d,
            ok=False,
            http_status=None,
            error=f"destination refused: {exc}",
            latency_ms=None,
            next_attempt_at=None,
        )
        return "refused"
    if not d.secrets:
        outbox.finish_delivery(
            d,
            ok=False,
            http_status=None,
            error="tenant has no signing secret",
            latency_ms=None,
            next_attempt_at=None,
        )
        return "refused"
    body = json.dumps(d.payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    at = utcnow()
    headers = {
        "content-type": "application/json",
        "webhook-id": d.webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": sign(d.secrets, d.webhook_id, at, body),
        "user-agent": "idbatch-webhooks/1",
    }
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    try:
        response = (client or http_client(settings)).post(d.url, content=body.encode(), headers=headers)
        status = response.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}"
    latency = (time.perf_counter() - started) * 1000
    if error is None:
        outbox.finish_delivery(
            d, ok=True, http_status=status, error=None, latency_ms=latency, next_attempt_at=None
        )
        return "delivered"
    due = utcnow() + dt.timedelta(seconds=backoff_s(d.attempt, settings))
    give_up = due > d.created_at + dt.timedelta(seconds=settings.webhook_max_age_s)
    outbox.finish_delivery(
        d,
        ok=False,
        http_status=status,
        error=error,
        latency_ms=latency,
        next_attempt_at=None if give_up else due,
    )
    if give_up:
        log.warning("webhook failed for good", outbox_id=outbox_id, attempts=d.attempt, error=error)
        return "failed"
    return "retry"


def sweep_webhooks(settings: Settings, app: Celery | None = None) -> int:
    """Emit events of finished batches, publish due deliveries, drop expired idempotency keys."""
    app = app or celery_app()
    now = utcnow()
    new = outbox.emit_events(now)
    publish_webhooks(new, app)
    due = outbox.take_due(now, settings.requeue_after_s)
    publish_webhooks(due, app)
    purge_idempotency_keys(now)
    return len(new) + len(due)
