"""Alembic environment: ``alembic upgrade head`` (repo root), ``idbatch db upgrade`` (anywhere).

The URL comes from ``sqlalchemy.url`` when the caller set one (``db.migrate``), else from
``IDBATCH_DATABASE_URL`` through the settings. On Postgres a transaction-scoped advisory
lock serializes migrators, so two deploys started at once never race on one revision,
and ``lock_timeout`` / ``statement_timeout`` bound how long a migration may wait for a
table lock held by live workers or run at all: a migration that would block the fleet
fails fast instead, to be retried in a quieter moment. Offline mode
(``alembic upgrade head --sql``) prints the SQL for a DBA to review and run.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import text

from db.models import Base
from db.session import make_engine
from idbatch.settings import get_settings

MIGRATION_LOCK_ID = 0x1DBA7C4
# Waiting longer than this for a lock means live traffic holds the table: give up.
LOCK_TIMEOUT = os.environ.get("IDBATCH_MIGRATION_LOCK_TIMEOUT", "5s")
STATEMENT_TIMEOUT = os.environ.get("IDBATCH_MIGRATION_STATEMENT_TIMEOUT", "5min")


def _url() -> str:
    return context.config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        if url.startswith("postgresql"):
            context.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            context.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
            context.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url(), pool_size=1)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch mode rebuilds a table to change its constraints (copy, DROP, rename). With
            # foreign keys on (db.session turns them on), that DROP runs the ON DELETE CASCADE
            # of every referencing table: rebuilding `batch` would delete every job. The pragma
            # is a no-op inside a transaction (and db.session opens one with BEGIN IMMEDIATE on
            # any statement), so it goes straight to the driver's connection, in autocommit,
            # before the migration's transaction; the keys are checked once it is done.
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # SET LOCAL: for this migration's transaction only.
                connection.execute(text("SELECT set_config('lock_timeout', :v, true)"), {"v": LOCK_TIMEOUT})
                connection.execute(
                    text("SELECT set_config('statement_timeout', :v, true)"), {"v": STATEMENT_TIMEOUT}
                )
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            connection.commit()
            if broken:
                raise RuntimeError(f"migration left {len(broken)} rows with a broken foreign key")
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
