"""job: enqueued_at, content_key, reused_from; indexes for the sweeper and idempotency

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Safe while old workers are up: every new column is nullable with no server default
(Postgres adds it without rewriting the table), old code never reads or writes them,
and the indexes cover columns that are empty when they are built. The partial unique
index only constrains rows whose ``content_key`` is set, which old workers never do.
On SQLite, batch mode rebuilds the table to add the foreign key (embedded mode has no
other workers while it migrates).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("content_key", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("reused_from", sa.BigInteger().with_variant(sa.Integer(), "sqlite")))
        batch.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            batch.f("fk_job_reused_from_job"), "job", ["reused_from"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_job_status_enqueued", ["status", "enqueued_at"])
        batch.create_index("ix_job_content_key", ["content_key"])
        batch.create_index(
            "uq_job_content_key_running",
            ["content_key"],
            unique=True,
            postgresql_where=RUNNING,
            sqlite_where=RUNNING,
        )


def downgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.drop_index("uq_job_content_key_running")
        batch.drop_index("ix_job_content_key")
        batch.drop_index("ix_job_status_enqueued")
        batch.drop_constraint(batch.f("fk_job_reused_from_job"), type_="foreignkey")
        batch.drop_column("enqueued_at")
        batch.drop_column("reused_from")
        batch.drop_column("content_key")
