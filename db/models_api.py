"""Tables of the HTTP API (issue 14): tenants, their keys, idempotency records, webhooks.

Kept apart from ``db.models`` (registered by one import at its end) so the API can grow
without touching the tables every worker reads. Batches carry ``batch.tenant_id``; jobs
inherit their tenant through their batch, so the worker hot path never sees tenancy.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, BigId, utcnow


class Tenant(Base):
    """A calling service. Its webhook secret is a Fernet token; two during a rotation."""

    __tablename__ = "tenant"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # Buckets (``bucket`` or ``bucket/prefix``) its s3:// refs and manifests may name.
    s3_allowed: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Providers it may use; empty: only the deployment's default provider.
    providers: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Per provider, the accounts of IDBATCH_ACCOUNTS (names, never secrets) its jobs may
    # use; a provider not named here (or null): all of the deployment's accounts.
    accounts: Mapped[dict[str, list[str]] | None] = mapped_column(JSON)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The secret being rotated out: deliveries are signed with both until this time.
    webhook_old_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    webhook_old_until: Mapped[dt.datetime | None]
    quota_per_s: Mapped[float | None] = mapped_column(Float)  # null: the deployment's default
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """``idb_<key_id>_<secret>``: the id finds the row, only a sha256 of the secret is kept.

    The secret is 32 random bytes, so a fast hash is enough (no password stretching):
    nobody can brute-force 256 bits from the digest.
    """

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(64))  # space separated: submit read reveal
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]


class IdempotencyRecord(Base):
    """One caller ``Idempotency-Key`` per tenant: its request fingerprint and first response."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("tenant_id", "key", name="uq_idempotency_record_tenant_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path and body
    state: Mapped[str] = mapped_column(String(16), default="in_progress")  # in_progress / done
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class BatchCallback(Base):
    """A batch whose end someone wants to hear about: the webhook sweep's work list.

    Only batches with a callback have a row, and only ``pending`` ones are scanned (a
    partial index), so finished batches of the CLI cost the sweep nothing and the worker
    writes nothing for webhooks.
    """

    __tablename__ = "batch_callback"
    __table_args__ = (
        Index(
            "ix_batch_callback_pending",
            "batch_id",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
    )

    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(32))  # verification.finished / batch.finished
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending / emitted
    progress_step: Mapped[int | None] = mapped_column(Integer)  # batch.progress every N finished
    progress_sent: Mapped[int] = mapped_column(Integer, default=0)


class WebhookOutbox(Base):
    """A durable event to deliver; ``webhook_id`` is derived from the event, so it is stable."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (Index("ix_webhook_outbox_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(96), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[int | None] = mapped_column(BigId)
    event: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending/delivered/failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=utcnow)
    enqueued_at: Mapped[dt.datetime | None]
    lease_until: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookDelivery(Base):
    """The delivery log: one row per attempt to POST an outbox event."""

    __tablename__ = "webhook_delivery"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("webhook_outbox.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    http_status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
