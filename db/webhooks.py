"""The webhook outbox: events derived from finished batches, due deliveries, the delivery log.

Events are *derived by the sweep*, not written by workers: a batch with a callback has a
``batch_callback`` row; once the sweeper has stamped the batch's ``finished_at`` (which
it does anyway), ``emit_finished`` turns it into an outbox row in one transaction with
``state = 'emitted'``. The worker's hot path writes nothing for webhooks, and a crash
between the two steps cannot lose an event: the callback row stays ``pending`` until
the outbox row is committed with it. ``webhook_id`` is derived from (batch, event), so
a re-emitted or redelivered event keeps its id and receivers can de-duplicate.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.api_reads import batch_view, job_view, single_job_of_batch
from db.models import Batch, Job, utcnow
from db.models_api import BatchCallback, WebhookDelivery, WebhookOutbox
from db.session import session_scope
from db.tenants import signing_secrets
from idbatch.domain import TERMINAL_STATUSES

PAGE = 500
VERIFICATION_FINISHED = "verification.finished"
BATCH_FINISHED = "batch.finished"
BATCH_PROGRESS = "batch.progress"


def webhook_id(batch_id: int, event: str, n: int | None = None) -> str:
    """The stable Standard Webhooks id of an event: the same event always has the same id."""
    return f"msg_{batch_id}_{event.replace('.', '_')}" + (f"_{n}" if n is not None else "")


def _payload(session: Session, cb: BatchCallback, event: str, now: dt.datetime) -> dict[str, Any]:
    if event == VERIFICATION_FINISHED:
        job_id = single_job_of_batch(session, cb.batch_id)
        data = job_view(session, cb.tenant_id, job_id) if job_id is not None else None
    else:
        data = batch_view(session, cb.tenant_id, cb.batch_id)
    return {"type": event, "timestamp": now.isoformat(), "data": data or {"batch_id": cb.batch_id}}


def _outbox(session: Session, cb: BatchCallback, event: str, now: dt.datetime, n: int | None = None) -> int:
    row = WebhookOutbox(
        webhook_id=webhook_id(cb.batch_id, event, n),
        tenant_id=cb.tenant_id,
        batch_id=cb.batch_id,
        event=event,
        url=cb.url,
        payload=_payload(session, cb, event, now),
        status="pending",
        attempts=0,
        next_attempt_at=now,
        enqueued_at=now,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def emit_events(now: dt.datetime | None = None) -> list[int]:
    """Outbox rows for finished batches (and progress steps); returns the new outbox ids.

    Callback rows are locked ``FOR UPDATE SKIP LOCKED``, so two sweepers never emit one
    event twice; the unique ``webhook_id`` would refuse it anyway.
    """
    now = now or utcnow()
    ids: list[int] = []
    with session_scope() as session:
        rows = session.execute(
            select(BatchCallback, Batch.finished_at)
            .join(Batch, Batch.id == BatchCallback.batch_id)
            .where(BatchCallback.state == "pending")
            .order_by(BatchCallback.batch_id)
            .limit(PAGE)
            .with_for_update(of=BatchCallback, skip_locked=True)
        ).all()
        for cb, finished_at in rows:
            if finished_at is None:
                if cb.progress_step:
                    ids += _progress(session, cb, now)
                continue
            ids.append(_outbox(session, cb, cb.event, now))
            cb.state = "emitted"
    return ids


def _progress(session: Session, cb: BatchCallback, now: dt.datetime) -> list[int]:
    step = cb.progress_step or 0
    done = int(
        session.scalar(
            select(func.count()).where(Job.batch_id == cb.batch_id, Job.status.in_(list(TERMINAL_STATUSES)))
        )
        or 0
    )
    out = []
    while step and (cb.progress_sent + 1) * step <= done:
        cb.progress_sent += 1
        out.append(_outbox(session, cb, BATCH_PROGRESS, now, cb.progress_sent * step))
    return out


def take_due(now: dt.datetime, requeue_after_s: float, limit: int = PAGE) -> list[int]:
    """Pending deliveries that are due and have no recent message: stamped and returned."""
    cutoff = now - dt.timedelta(seconds=requeue_after_s)
    with session_scope() as session:
        ids = list(
            session.scalars(
                select(WebhookOutbox.id)
                .where(
                    WebhookOutbox.status == "pending",
                    WebhookOutbox.next_attempt_at <= now,
                    (WebhookOutbox.enqueued_at.is_(None)) | (WebhookOutbox.enqueued_at <= cutoff),
                )
                .order_by(WebhookOutbox.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if ids:
            session.execute(update(WebhookOutbox).where(WebhookOutbox.id.in_(ids)).values(enqueued_at=now))
    return ids


@dataclass(frozen=True)
class Delivery:
    outbox_id: int
    webhook_id: str
    url: str
    payload: dict[str, Any]
    attempt: int  # this attempt's number, 1-based
    created_at: dt.datetime
    secrets: list[str]


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def begin_delivery(outbox_id: int, now: dt.datetime, lease_s: float) -> Delivery | None:
    """Take a due delivery for one attempt (a lease, so a duplicate message does nothing)."""
    with session_scope() as session:
        row = session.scalar(select(WebhookOutbox).where(WebhookOutbox.id == outbox_id).with_for_update())
        if row is None or row.status != "pending":
            return None
        if row.next_attempt_at is not None and _aware(row.next_attempt_at) > now:
            return None
        if row.lease_until is not None and _aware(row.lease_until) > now:
            return None
        row.lease_until = now + dt.timedelta(seconds=lease_s)
        return Delivery(
            row.id,
            row.webhook_id,
            row.url,
            dict(row.payload),
            row.attempts + 1,
            _aware(row.created_at),
            signing_secrets(session, row.tenant_id, now),
        )


def finish_delivery(
    d: Delivery,
    *,
    ok: bool,
    http_status: int | None,
    error: str | None,
    latency_ms: float | None,
    next_attempt_at: dt.datetime | None,
) -> None:
    """Log the attempt and move the event on: delivered, due again at ``next_attempt_at``, or failed."""
    now = utcnow()
    status = "delivered" if ok else ("pending" if next_attempt_at is not None else "failed")
    with session_scope() as session:
        session.add(
            WebhookDelivery(
                outbox_id=d.outbox_id,
                attempt=d.attempt,
                at=now,
                http_status=http_status,
                latency_ms=latency_ms,
                ok=ok,
                error=error,
            )
        )
        session.execute(
            update(WebhookOutbox)
            .where(WebhookOutbox.id == d.outbox_id)
            .values(
                status=status,
                attempts=d.attempt,
                next_attempt_at=next_attempt_at,
                lease_until=None,
                enqueued_at=None,
                delivered_at=now if ok else None,
                last_error=error,
            )
        )


def redeliver(
    outbox_ids: list[int] | None = None, *, batch_id: int | None = None, failed_only: bool = False
) -> list[int]:
    """Send events again (``idbatch webhooks redeliver``): same webhook-id, a fresh attempt now."""
    now = utcnow()
    stmt = update(WebhookOutbox)
    if outbox_ids:
        stmt = stmt.where(WebhookOutbox.id.in_(outbox_ids))
    if batch_id is not None:
        stmt = stmt.where(WebhookOutbox.batch_id == batch_id)
    if failed_only:
        stmt = stmt.where(WebhookOutbox.status == "failed")
    with session_scope() as session:
        return list(
            session.scalars(
                stmt.values(
                    status="pending", next_attempt_at=now, enqueued_at=now, lease_until=None, created_at=now
                ).returning(WebhookOutbox.id)
            )
        )


def outbox_summary(session: Session, tenant_id: int | None = None) -> dict[str, int]:
    """Outbox rows by status (tests, ``idbatch webhooks``)."""
    stmt = select(WebhookOutbox.status, func.count()).group_by(WebhookOutbox.status)
    if tenant_id is not None:
        stmt = stmt.where(WebhookOutbox.tenant_id == tenant_id)
    return {str(s): int(n) for s, n in session.execute(stmt)}
