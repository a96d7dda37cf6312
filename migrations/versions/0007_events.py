"""event_object: the S3 upload-event ledger (pending sides waiting for their partner)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

A new table: nothing old reads or writes it, safe with old workers up. The old
listener's jobs stay as they are; a new listener appends after them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "event_object",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("batch_id", _ID, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("etag", sa.String(length=128), nullable=False),
        sa.Column("size", _ID, nullable=False),
        sa.Column("card_key", sa.Text(), nullable=True),
        sa.Column("side", sa.String(length=8), nullable=True),
        sa.Column("external_ref", sa.String(length=256), nullable=True),
        sa.Column("claimed_name_enc", sa.LargeBinary(), nullable=True),
        sa.Column("claimed_id_enc", sa.LargeBinary(), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", _ID, nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_event_object"),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batch.id"], name="fk_event_object_batch_id_batch", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name="fk_event_object_job_id_job", ondelete="SET NULL"
        ),
        sa.UniqueConstraint("url", "etag", name="uq_event_object_url_etag"),
    )
    pending = sa.text("job_id IS NULL")
    op.create_index(
        "ix_event_object_pending_card",
        "event_object",
        ["batch_id", "card_key"],
        postgresql_where=pending,
        sqlite_where=pending,
    )
    op.create_index(
        "ix_event_object_pending_seen",
        "event_object",
        ["seen_at"],
        postgresql_where=pending,
        sqlite_where=pending,
    )
    op.create_index("ix_event_object_card", "event_object", ["batch_id", "card_key"])


def downgrade() -> None:
    op.drop_table("event_object")
