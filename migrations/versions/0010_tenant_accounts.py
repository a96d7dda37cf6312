"""tenant accounts: tenant.accounts (provider -> account names) and batch.accounts

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

Two nullable JSON columns, no default, no rewrite. Null means "no restriction": every
existing tenant and batch keeps running on all of the deployment's accounts, as before.
Names only: an account's secrets stay in ``IDBATCH_ACCOUNTS``, never in the database.
Old workers ignore ``batch.accounts`` (they would use any account), so upgrade the
workers before giving a tenant accounts of its own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenant") as tenant:
        tenant.add_column(sa.Column("accounts", sa.JSON(), nullable=True))
    with op.batch_alter_table("batch") as batch:
        batch.add_column(sa.Column("accounts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch") as batch:
        batch.drop_column("accounts")
    with op.batch_alter_table("tenant") as tenant:
        tenant.drop_column("accounts")
