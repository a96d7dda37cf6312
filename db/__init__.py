"""Persistence: Postgres (or SQLite in the embedded mode) is the source of truth."""
