"""Engine and session factory built from settings.

SQLite (embedded mode) is tuned for a thread pool of workers: WAL so readers never
block the writer, a busy timeout, and ``BEGIN IMMEDIATE`` so a transaction takes the
write lock up front instead of failing with SQLITE_BUSY when it upgrades from a read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from idbatch.settings import get_settings


def make_engine(url: str, pool_size: int = 10, pre_ping: bool = True) -> Engine:
    """An engine for ``url``; ``pre_ping`` tests each pooled connection before handing it out.

    Pre-ping costs a round trip per checkout. Worker processes turn it off
    (``IDBATCH_DB_PRE_PING=false`` from ``idbatch worker``): every worker transaction runs
    under ``workers.durable.durably``, which retries a connection that died (Postgres
    restarted, backend terminated) on a fresh one after SQLAlchemy invalidated the pool.
    Producers, the CLI and tools keep it on and reconnect transparently.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            # The embedded database holds PII tokens and reasons: this user's only.
            Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 60},
            pool_size=pool_size,
            max_overflow=pool_size,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # Each worker thread holds at most one connection at a time, so the pool is the
    # thread count plus a little slack; a process never opens more than pool_size + 2.
    # Size Postgres' max_connections (or a pgbouncer) for workers x (concurrency + 4).
    return create_engine(url, pool_size=pool_size, max_overflow=2, pool_pre_ping=pre_ping, pool_recycle=1800)


@lru_cache(maxsize=1)
def engine() -> Engine:
    settings = get_settings()
    return make_engine(
        settings.database_url, pool_size=settings.worker_concurrency + 2, pre_ping=settings.db_pre_ping
    )


def warm_pool(n: int) -> int:
    """Open ``n`` pooled connections now and put them back; how many opened.

    For a server about to take requests (the API's start-up): otherwise its first
    requests each pay a Postgres connect (a backend fork, TLS, the pool's first-connect
    events) while the load is already arriving, and on a 2-core box that queue took
    a second or two to drain (``bench/api.py``'s first-second p99). Best effort: a
    database that refuses now is the first request's problem, answered 503.
    """
    from sqlalchemy.exc import SQLAlchemyError

    opened: list[Any] = []
    try:
        for _ in range(n):
            opened.append(engine().connect())
    except SQLAlchemyError:
        pass
    finally:
        for conn in opened:
            conn.close()
    return len(opened)


@lru_cache(maxsize=1)
def session_factory() -> sessionmaker[Session]:
    return sessionmaker(engine(), expire_on_commit=False)


_AFTER_COMMIT = "idbatch.after_commit"


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run ``fn`` once ``session_scope``'s transaction has committed (never if it rolls back).

    Run outside the commit, so an error in ``fn`` (a broker that went away) reaches the
    caller as itself, with the transaction's data safely stored.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(fn)


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception; then the after-commit work."""
    session = session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        pending: list[Callable[[], None]] = session.info.pop(_AFTER_COMMIT, [])
        session.close()
    for fn in pending:
        fn()


@contextmanager
def connection_scope() -> Iterator[Connection]:
    """One transaction on a bare Core connection: commit on success, roll back on any exception.

    For the workers' hot path (claim, content key, finish), whose statements are all Core:
    an ORM ``Session`` around them (its transaction object, identity map, snapshot, flush
    check at commit, close) cost ~60 µs more CPU per transaction than ``Engine.begin``
    (ad-hoc timing on Postgres, one UPDATE: 140-180 µs against 96-108 µs), at three
    transactions per job on a CPU-bound host. No ``after_commit`` hooks here.
    """
    with engine().begin() as conn:
        yield conn


def reset() -> None:
    """Forget the cached engine (after settings change, or in a forked child)."""
    if engine.cache_info().currsize:
        engine().dispose()
    engine.cache_clear()
    session_factory.cache_clear()
