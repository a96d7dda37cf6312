"""api: tenants, API keys, idempotency records, webhook outbox and log; batch.tenant_id

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

New tables and one nullable column on batch (no default, no rewrite): old workers never
read them, so this is safe with workers up.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tenant",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("s3_allowed", sa.JSON(), nullable=False),
        sa.Column("providers", sa.JSON(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("webhook_secret_enc", sa.LargeBinary(), nullable=True),
        sa.Column("webhook_old_secret_enc", sa.LargeBinary(), nullable=True),
        sa.Column("webhook_old_until", TS, nullable=True),
        sa.Column("quota_per_s", sa.Float(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenant"),
        sa.UniqueConstraint("name", name="uq_tenant_name"),
    )
    op.create_table(
        "api_key",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("tenant_id", BigId, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_key"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name="fk_api_key_tenant_id_tenant", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("key_id", name="uq_api_key_key_id"),
    )
    op.create_index("ix_api_key_tenant_id", "api_key", ["tenant_id"])
    op.create_table(
        "idempotency_record",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("tenant_id", BigId, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_idempotency_record"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name="fk_idempotency_record_tenant_id_tenant", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("tenant_id", "key", name="uq_idempotency_record_tenant_key"),
    )
    op.create_index("ix_idempotency_record_expires_at", "idempotency_record", ["expires_at"])
    op.create_table(
        "batch_callback",
        sa.Column("batch_id", BigId, nullable=False),
        sa.Column("tenant_id", BigId, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress_step", sa.Integer(), nullable=True),
        sa.Column("progress_sent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name="pk_batch_callback"),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batch.id"], name="fk_batch_callback_batch_id_batch", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name="fk_batch_callback_tenant_id_tenant", ondelete="CASCADE"
        ),
    )
    op.create_index(
        "ix_batch_callback_pending",
        "batch_callback",
        ["batch_id"],
        postgresql_where=sa.text("state = 'pending'"),
        sqlite_where=sa.text("state = 'pending'"),
    )
    op.create_table(
        "webhook_outbox",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("webhook_id", sa.String(96), nullable=False),
        sa.Column("tenant_id", BigId, nullable=False),
        sa.Column("batch_id", BigId, nullable=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("enqueued_at", TS, nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_outbox"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name="fk_webhook_outbox_tenant_id_tenant", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("webhook_id", name="uq_webhook_outbox_webhook_id"),
    )
    op.create_index("ix_webhook_outbox_status_next", "webhook_outbox", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_outbox_tenant_id", "webhook_outbox", ["tenant_id"])
    op.create_table(
        "webhook_delivery",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("outbox_id", BigId, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_delivery"),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["webhook_outbox.id"],
            name="fk_webhook_delivery_outbox_id_webhook_outbox",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_webhook_delivery_outbox_id", "webhook_delivery", ["outbox_id"])
    with op.batch_alter_table("batch") as batch:
        batch.add_column(sa.Column("tenant_id", BigId, nullable=True))
        batch.create_foreign_key(
            "fk_batch_tenant_id_tenant", "tenant", ["tenant_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_batch_tenant_id", ["tenant_id"])


def downgrade() -> None:
    with op.batch_alter_table("batch") as batch:
        batch.drop_index("ix_batch_tenant_id")
        batch.drop_constraint("fk_batch_tenant_id_tenant", type_="foreignkey")
        batch.drop_column("tenant_id")
    for table in (
        "webhook_delivery",
        "webhook_outbox",
        "batch_callback",
        "idempotency_record",
        "api_key",
        "tenant",
    ):
        op.drop_table(table)
