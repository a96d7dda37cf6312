"""event_object: every object an S3 upload event named, and the job it ended in.

The ledger behind ``idbatch listen`` (issue 19). One row per object *version*
(``url`` + ``etag``, unique): a redelivered or duplicated event inserts nothing, so
redelivery never makes a second job. A side of a card (``card_key`` + ``side``) with no
``job_id`` yet is *pending*: it waits here, in Postgres and not in a listener's memory,
for its other side until the pairing window ends; restarts lose nothing.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
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
from idbatch import fields


class EventObject(Base):
    __tablename__ = "event_object"
    __table_args__ = (
        UniqueConstraint("url", "etag", name="uq_event_object_url_etag"),
        # the pending sides of one card, found when its partner arrives
        Index(
            "ix_event_object_pending_card",
            "batch_id",
            "card_key",
            postgresql_where=text("job_id IS NULL"),
            sqlite_where=text("job_id IS NULL"),
        ),
        # the pending sides whose window ended, found by the sweep
        Index(
            "ix_event_object_pending_seen",
            "seen_at",
            postgresql_where=text("job_id IS NULL"),
            sqlite_where=text("job_id IS NULL"),
        ),
        Index("ix_event_object_card", "batch_id", "card_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)  # s3://bucket/key
    etag: Mapped[str] = mapped_column(String(128), default="")
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), default=0)
    # "bucket/<ref>" for objects following the naming convention, else null (no pairing)
    card_key: Mapped[str | None] = mapped_column(Text)
    side: Mapped[str | None] = mapped_column(String(8))
    external_ref: Mapped[str | None] = mapped_column(String(fields.EXTERNAL_REF_MAX))
    # Claims from the object's metadata or sidecar, validated like manifest rows and held
    # as vault tokens bound to this table; cleared once the side is a job.
    claimed_name_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    claimed_id_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Why this object cannot be verified (size, unreadable metadata); its card is rejected.
    problem: Mapped[str | None] = mapped_column(Text)
    seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"))
    resolved_at: Mapped[dt.datetime | None]


__all__ = ["EventObject"]
