"""Run Alembic migrations from code, so ``idbatch db upgrade`` works from any directory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine


def _migrations_dir() -> Path:
    """Where the ``migrations`` package is, found without importing it (it imports db)."""
    spec = importlib.util.find_spec("migrations")
    if spec is None or spec.origin is None:
        raise RuntimeError("the migrations package is not installed")
    return Path(spec.origin).parent


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head() -> str | None:
    return _scripts().get_current_head()


def current(database_url: str) -> str | None:
    """The revision the database is at (None for an empty database)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def pending(database_url: str) -> bool:
    """True if the database is not at the latest revision."""
    return current(database_url) != head()


def history() -> list[str]:
    return [f"{s.revision}  {s.doc}" for s in reversed(list(_scripts().walk_revisions()))]
