"""result: provider_verdict, answered_at; job: claim_seq, line_number; side_answer; attempt index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Safe while old workers are up: both columns are nullable without a server default, old
code neither reads nor writes them; ``answered_at`` is back-filled from ``created_at``
(the time the answer was recorded, the best that old rows know). The partial index
serves only ``in_flight`` attempt rows, which old code never writes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

IN_FLIGHT = sa.text("outcome = 'in_flight'")


def upgrade() -> None:
    with op.batch_alter_table("result") as batch:
        batch.add_column(sa.Column("provider_verdict", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE result SET answered_at = created_at WHERE answered_at IS NULL")
    # A constant server default: Postgres adds the column without rewriting the table.
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("claim_seq", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("line_number", sa.Integer(), nullable=True))
    op.execute("UPDATE job SET claim_seq = attempt_count")
    op.create_table(
        "side_answer",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("claim_seq", sa.Integer(), nullable=False),
        sa.Column("payload_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], name="fk_side_answer_job_id_job", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_side_answer"),
        sa.UniqueConstraint("job_id", "side", name="uq_side_answer_job_side"),
    )
    op.create_index(
        "ix_attempt_in_flight",
        "attempt",
        ["job_id"],
        postgresql_where=IN_FLIGHT,
        sqlite_where=IN_FLIGHT,
    )


def downgrade() -> None:
    op.drop_index("ix_attempt_in_flight", table_name="attempt")
    op.drop_table("side_answer")
    with op.batch_alter_table("job") as batch:
        batch.drop_column("claim_seq")
        batch.drop_column("line_number")
    with op.batch_alter_table("result") as batch:
        batch.drop_column("answered_at")
        batch.drop_column("provider_verdict")
