"""Tables of issue 15: rerun schedules, each slot they fired, and a rerun's link to its parent.

- ``rerun_schedule``: a named cron expression (UTC) and a policy over one batch's cards.
- ``rerun_firing``: one row per (schedule, slot), unique: however many beat processes
  run, only the one whose INSERT lands fires that slot (the others' insert conflicts).
  It also records what the firing did (the rerun batch, or why there was none).
- ``rerun_link``: a batch of kind ``rerun``, the batch it re-verifies (its parent), the
  lineage's first batch (root), and the policy and budget it ran under. Cards keep their
  parent's ``row_number`` in a rerun, so one card is the same row number in every batch
  of a lineage: drift and history join on it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, BigId, Job, utcnow


class RerunSchedule(Base):
    __tablename__ = "rerun_schedule"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    cron: Mapped[str] = mapped_column(String(128))
    # The lineage whose latest batch each firing re-verifies.
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
    # The last slot fired (or, before any, the creation time): the next due slot is after it.
    last_slot: Mapped[dt.datetime | None]


class RerunFiring(Base):
    __tablename__ = "rerun_firing"
    __table_args__ = (UniqueConstraint("schedule_id", "slot", name="uq_rerun_firing_schedule_slot"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("rerun_schedule.id", ondelete="SET NULL"))
    schedule_name: Mapped[str] = mapped_column(String(64))  # kept when the schedule is removed
    slot: Mapped[dt.datetime]
    fired_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
    fired_by: Mapped[str | None] = mapped_column(String(128))  # host:pid of the process that won
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batch.id", ondelete="SET NULL"))
    outcome: Mapped[str] = mapped_column(String(16))  # fired / empty / failed
    detail: Mapped[str | None] = mapped_column(Text)


class RerunLink(Base):
    __tablename__ = "rerun_link"

    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"), index=True)
    root_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"), index=True)
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("rerun_schedule.id", ondelete="SET NULL"))
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    selected: Mapped[int] = mapped_column(Integer, default=0)  # cards the policy chose
    held: Mapped[int] = mapped_column(Integer, default=0)  # of them, left pending by the budget
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


# Per-card history looks cards up by their reference across batches (issue 15).
Index("ix_job_external_ref", Job.external_ref)

__all__ = ["RerunFiring", "RerunLink", "RerunSchedule"]
