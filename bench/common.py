"""What the benchmarks share: the Postgres admin URL, a throwaway PII key, ports, databases.

The benchmarks run as scripts (``python bench/quota.py``), so this folder is on
``sys.path`` and they import this module as ``common``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_ADMIN = os.environ.get(
    "IDBATCH_BENCH_PG_ADMIN",
    os.environ.get("IDBATCH_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
PII_KEY = "k3Qk0m9o0nQyX1y4e5Vv2y4j4h2m0p3qZ9a8b7c6d5E="  # bench-only Fernet key; data is synthetic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def fresh_database(prefix: str, *, migrate: bool = False) -> Iterator[str]:
    """A new Postgres database (SQLAlchemy URL), migrated if asked, dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    try:
        if migrate:
            from db.migrate import upgrade

            upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
