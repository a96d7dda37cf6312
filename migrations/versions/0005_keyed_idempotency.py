"""job.idempotency_key: keyed (HMAC under a sub-key of the PII key) instead of a bare SHA-256

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

A bare digest of (provider, config, image refs, claimed name, claimed ID number) lets
anyone holding the database brute-force a claimed ID number (the space is small). New
keys are ``HMAC(k, sha256(material))``; this migration turns every stored key into the
same form, ``HMAC(k, stored digest)``, so old and new rows keep matching. It needs the
PII key (``IDBATCH_PII_KEY``), exactly as the workers do. Runs in pages; old workers
would write bare digests meanwhile, so deploy the new code before running it. Offline
(``--sql``) it cannot compute HMACs: it prints a note and changes nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PAGE = 10_000
PURPOSE = "idempotency-key"  # = producers.submit.IDEMPOTENCY


def upgrade() -> None:
    if context.is_offline_mode():
        op.execute("-- 0005: run online to key existing idempotency keys (needs the PII key)")
        return
    from idbatch.pii import Vault
    from idbatch.settings import get_settings

    conn = op.get_bind()
    if conn.execute(sa.text("SELECT 1 FROM job WHERE idempotency_key IS NOT NULL LIMIT 1")).first() is None:
        return  # nothing stored yet: no key needed
    vault = Vault(get_settings().pii_key_bytes())
    job = sa.table("job", sa.column("id", sa.BigInteger), sa.column("idempotency_key", sa.String))
    last = 0
    while True:
        rows = conn.execute(
            sa.select(job.c.id, job.c.idempotency_key)
            .where(job.c.id > last, job.c.idempotency_key.is_not(None))
            .order_by(job.c.id)
            .limit(PAGE)
        ).all()
        if not rows:
            return
        conn.execute(
            job.update()
            .where(job.c.id == sa.bindparam("b_id"))
            .values(idempotency_key=sa.bindparam("b_key")),
            [{"b_id": r.id, "b_key": vault.keyed(PURPOSE, r.idempotency_key)} for r in rows],
        )
        last = rows[-1].id


def downgrade() -> None:
    # An HMAC cannot be turned back into the bare digest: older code will simply not
    # recognise these keys as duplicates (content keys still prevent paying twice).
    pass
