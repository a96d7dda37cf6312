"""Alembic migrations (the same revisions run on Postgres and SQLite)."""
