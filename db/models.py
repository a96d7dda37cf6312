"""SQLAlchemy 2 typed models: batch, job, attempt, result, warning.

Enums are stored by value as plain strings (portable between SQLite and Postgres and
readable in ad-hoc SQL months later). Unique constraints make redelivery harmless:
one result per job, one attempt row per (job, attempt number, side), one job per
manifest row of a batch.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from idbatch import fields
from idbatch.domain import AttemptOutcome, BatchKind, BatchState, JobStatus, Verdict

# SQLite only auto-increments INTEGER PRIMARY KEY; Postgres gets BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _enum(cls: type) -> SAEnum:
    return SAEnum(
        cls,
        values_callable=lambda e: [m.value for m in e],
        native_enum=False,
        length=16,
        validate_strings=True,
        create_constraint=False,
    )


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: DateTime(timezone=True),
        dict[str, Any]: JSON,
    }


class Batch(Base):
    __tablename__ = "batch"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    kind: Mapped[BatchKind] = mapped_column(_enum(BatchKind))
    state: Mapped[BatchState] = mapped_column(_enum(BatchState), default=BatchState.ACTIVE)
    provider: Mapped[str] = mapped_column(String(32))
    provider_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    ingest_complete: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
    finished_at: Mapped[dt.datetime | None]
    # The API tenant that submitted it (issue 14); CLI and S3 batches have none.
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenant.id", ondelete="SET NULL"), index=True)
    # The provider accounts (names in IDBATCH_ACCOUNTS) its jobs may be called and billed
    # on, fixed at submit from its tenant's; null: any of the deployment's accounts.
    accounts: Mapped[list[str] | None] = mapped_column(JSON)

    jobs: Mapped[list[Job]] = relationship(back_populates="batch", lazy="raise")


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (
        UniqueConstraint("batch_id", "row_number", name="uq_job_batch_row"),
        Index("ix_job_batch_status", "batch_id", "status"),
        Index("ix_job_status_next", "status", "next_attempt_at"),
        Index("ix_job_idempotency", "idempotency_key"),
        Index("ix_job_status_enqueued", "status", "enqueued_at"),
        Index("ix_job_content_key", "content_key"),
        # At most one job *calling the provider* per content key at any moment: a
        # duplicate row or a resubmitted manifest waits for the first answer and reuses it
        # instead of paying for a second one (see workers.record.prepare_call).
        Index(
            "uq_job_content_key_running",
            "content_key",
            unique=True,
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    row_number: Mapped[int | None] = mapped_column(Integer)
    external_ref: Mapped[str | None] = mapped_column(String(fields.EXTERNAL_REF_MAX))
    line_number: Mapped[int | None] = mapped_column(Integer)  # the manifest line the row ended on
    front_image: Mapped[str | None] = mapped_column(Text)
    back_image: Mapped[str | None] = mapped_column(Text)
    claimed_name_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    claimed_id_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    claimed_id_hash: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    # sha256 of what is verified (image bytes + provider + config + claims), set by the
    # worker right before it calls the provider; equal keys = the same billable question.
    content_key: Mapped[str | None] = mapped_column(String(64))
    # The job whose paid answer this job reuses (no provider call was made for it).
    reused_from: Mapped[int | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"))
    # When a message for this job was last published; the sweeper re-publishes from here.
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(default=utcnow)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.PENDING)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)  # the retry budget spent
    # Claims so far, never decremented: numbers the attempt rows, so a claim whose attempt
    # was given back (a blocked account, a deferral) can never reuse a number.
    claim_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[dt.datetime | None]
    error_class: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )
    finished_at: Mapped[dt.datetime | None]

    batch: Mapped[Batch] = relationship(back_populates="jobs", lazy="raise")


class Attempt(Base):
    """One row per provider call, written before it (``in_flight``) and completed after it,
    so billing reconciles even with a worker killed mid-call."""

    __tablename__ = "attempt"
    __table_args__ = (
        UniqueConstraint("job_id", "number", "side", name="uq_attempt_job_number_side"),
        Index(
            "ix_attempt_in_flight",
            "job_id",
            postgresql_where=text("outcome = 'in_flight'"),
            sqlite_where=text("outcome = 'in_flight'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    side: Mapped[str] = mapped_column(String(8), default="front")
    provider: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime]
    latency_ms: Mapped[float | None] = mapped_column(Float)
    http_status: Mapped[int | None] = mapped_column(Integer)
    provider_code: Mapped[str | None] = mapped_column(String(128))
    provider_request_id: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[AttemptOutcome] = mapped_column(_enum(AttemptOutcome))
    billable: Mapped[bool] = mapped_column(Boolean, default=False)
    handoff: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)


class Result(Base):
    """The normalized answer; PII columns hold Fernet tokens (see idbatch.pii)."""

    __tablename__ = "result"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), unique=True)
    provider: Mapped[str] = mapped_column(String(32))
    verdict: Mapped[Verdict] = mapped_column(_enum(Verdict))
    name_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    sex: Mapped[str | None] = mapped_column(String(8))
    nation: Mapped[str | None] = mapped_column(String(32))
    birth: Mapped[dt.date | None]
    address_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    id_number_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    id_number_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    authority: Mapped[str | None] = mapped_column(String(128))
    valid_from: Mapped[dt.date | None]
    valid_to: Mapped[dt.date | None]
    valid_long_term: Mapped[bool] = mapped_column(Boolean, default=False)
    similarity: Mapped[float | None] = mapped_column(Float)
    quality: Mapped[float | None] = mapped_column(Float)
    description: Mapped[str | None] = mapped_column(Text)
    raw_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The provider's own verdict, before our rules (verdict is after them): a reused
    # answer is judged again for the job that reuses it. Null on rows from before 0004.
    provider_verdict: Mapped[Verdict | None] = mapped_column(_enum(Verdict))
    # When the provider answered; a reused copy keeps the original's (freshness window).
    answered_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class AuditEvent(Base):
    """Who looked at unmasked PII, when, and what: one row per ``--reveal``, kept for review."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    detail: Mapped[str | None] = mapped_column(Text)


class SideAnswer(Base):
    """One side of a two-sided card, answered and paid for before the other side failed.

    The retry sends only the missing side and finishes the card from this; the payload is
    the adapter's own reply (a Fernet token: it holds the recognized PII).
    """

    __tablename__ = "side_answer"
    __table_args__ = (UniqueConstraint("job_id", "side", name="uq_side_answer_job_side"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"))
    side: Mapped[str] = mapped_column(String(8))
    claim_seq: Mapped[int] = mapped_column(Integer)  # the attempt that paid for it
    payload_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class JobWarning(Base):
    __tablename__ = "warning"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(48))
    source: Mapped[str] = mapped_column(String(16))
    provider_code: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)


class ProviderAccount(Base):
    """Per provider account circuit state: the durable record of "stop calling this account".

    Kept in the database (not only in Redis) because an operator's decision and the reason
    an account was blocked must survive a broker restart and show in ``idbatch status``.
    """

    __tablename__ = "provider_account"
    __table_args__ = (UniqueConstraint("provider", "account", name="uq_provider_account"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="closed")  # closed / open / half_open
    reason: Mapped[str | None] = mapped_column(Text)
    provider_code: Mapped[str | None] = mapped_column(String(128))
    opened_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )


__all__ = [
    "Attempt",
    "AuditEvent",
    "Base",
    "Batch",
    "Job",
    "JobWarning",
    "ProviderAccount",
    "Result",
    "SideAnswer",
    "Verdict",
]

# Feature tables live in their own modules; importing them here registers them on Base.metadata.
from db import models_api, models_events, models_rerun  # noqa: E402, F401 - issues 14, 19, 15
