"""An in-process Celery worker for the embedded mode and tests.

The same task code as production, consuming from the same kind of broker connection
(the in-memory transport here): not eager mode, which would bypass serialization,
acknowledgement and concurrency entirely. Modelled on celery.contrib.testing.worker.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery


@contextmanager
def embedded_worker(app: Celery, concurrency: int, queue: str) -> Iterator[Any]:
    from celery.worker import state

    worker = app.WorkController(
        pool_cls="threads",
        concurrency=concurrency,
        queues=[queue],
        hostname=f"embedded@{socket.gethostname()}",
        loglevel="WARNING",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        ready_callback=None,
    )
    thread = threading.Thread(target=worker.start, name="celery-embedded", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        state.should_terminate = 0
        thread.join(30)
        state.should_terminate = None
