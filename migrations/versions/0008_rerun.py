"""rerun_schedule, rerun_firing, rerun_link; an index on job.external_ref (issue 15)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

New tables nothing old reads or writes, and one index on job.external_ref: safe with
old workers up. The index is built in the migration's transaction (not CONCURRENTLY,
which cannot run inside the advisory-locked transaction of migrations/env.py): on a job
table of many millions of rows, build it beforehand with
``CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_job_external_ref ON job (external_ref)``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rerun_schedule",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("cron", sa.String(128), nullable=False),
        sa.Column("batch_id", BigId, nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("last_slot", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rerun_schedule"),
        sa.UniqueConstraint("name", name="uq_rerun_schedule_name"),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batch.id"], name="fk_rerun_schedule_batch_id_batch", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "rerun_firing",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("schedule_id", BigId, nullable=True),
        sa.Column("schedule_name", sa.String(64), nullable=False),
        sa.Column("slot", TS, nullable=False),
        sa.Column("fired_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("fired_by", sa.String(128), nullable=True),
        sa.Column("batch_id", BigId, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rerun_firing"),
        sa.UniqueConstraint("schedule_id", "slot", name="uq_rerun_firing_schedule_slot"),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["rerun_schedule.id"],
            name="fk_rerun_firing_schedule_id_rerun_schedule",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batch.id"], name="fk_rerun_firing_batch_id_batch", ondelete="SET NULL"
        ),
    )
    op.create_table(
        "rerun_link",
        sa.Column("batch_id", BigId, nullable=False),
        sa.Column("parent_id", BigId, nullable=False),
        sa.Column("root_id", BigId, nullable=False),
        sa.Column("schedule_id", BigId, nullable=True),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("selected", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name="pk_rerun_link"),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batch.id"], name="fk_rerun_link_batch_id_batch", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["batch.id"], name="fk_rerun_link_parent_id_batch", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["root_id"], ["batch.id"], name="fk_rerun_link_root_id_batch", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["rerun_schedule.id"],
            name="fk_rerun_link_schedule_id_rerun_schedule",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_rerun_link_parent_id", "rerun_link", ["parent_id"])
    op.create_index("ix_rerun_link_root_id", "rerun_link", ["root_id"])
    op.create_index("ix_job_external_ref", "job", ["external_ref"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_job_external_ref", table_name="job")
    op.drop_table("rerun_link")
    op.drop_table("rerun_firing")
    op.drop_table("rerun_schedule")
