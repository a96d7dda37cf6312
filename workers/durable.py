"""Transactions that must not be lost to a database outage.

A paid answer is never thrown away: if the database is unreachable when the answer is
recorded, the finishing transaction is retried with capped backoff for as long as it
takes. The answer stays in memory meanwhile; the alternative, spooling it to a local
file, would need a replayer and PII-at-rest handling on every worker host, while keeping
the thread busy only delays this one job. A worker killed during that wait loses the
answer, and the re-delivery pays again: bounded by kills x concurrency.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

from idbatch.logging import get_logger

log = get_logger(__name__)

DB_BACKOFF_CAP_S = 30.0
T = TypeVar("T")


def durably(fn: Callable[[], T], what: str, *, tries: int | None = None) -> T:
    """Run a transaction, retrying while the database is unreachable (forever by default).

    Only connection-level errors are retried (server restarted, connection terminated,
    SQLite busy); anything else is a bug and propagates. Each try is a fresh session,
    so a half-done transaction is never reused.
    """
    delay = 0.2
    n = 0
    while True:
        try:
            return fn()
        except (OperationalError, InterfaceError) as exc:
            n += 1
            if tries is not None and n >= tries:
                raise
            log.warning("database unavailable, retrying", step=what, tries=n, error=str(exc.orig))
            time.sleep(delay)
            delay = min(delay * 2, DB_BACKOFF_CAP_S)
