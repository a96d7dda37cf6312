"""Coalesced publishing of single-card jobs: one fan-out message per few milliseconds.

A single-card POST used to publish its ``verify`` message itself, right after its commit:
a Celery ``send_task`` per request, a tenth of the request's CPU in the API process. Here
the committed job ids are handed to a daemon thread that sends them every
``api_publish_linger_ms`` as one ``fan_out`` message (``dispatch.publish.publish_fanout``,
the message the bulk ingest sends per chunk; a worker expands it into ``verify``
messages). At 300 cards/s and 50 ms that is at most 20 messages/s instead of 300.

Nothing is lost by the wait: ids are only handed over after their transaction committed,
so a job whose message was never sent (process killed inside the linger window, broker
down) is a ``queued`` row the sweeper re-publishes, exactly as when an immediate publish
fails after the commit. ``close()`` (the app's shutdown) flushes what is pending.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from dispatch.publish import publish_fanout
from idbatch.logging import get_logger

log = get_logger(__name__)


class LingeringPublisher:
    """Collects committed job ids; a thread publishes them together every ``linger_s``."""

    def __init__(self, linger_s: float, publish: Callable[[list[int]], None] = publish_fanout) -> None:
        self.linger_s, self._publish = linger_s, publish
        self._pending: list[int] = []
        self._cond = threading.Condition()
        self._closed = False
        self._waiting = False  # the thread waits for ids (not lingering): wake it
        self._thread: threading.Thread | None = None

    def __call__(self, job_ids: list[int]) -> None:
        """A ``dispatch.publish.Publisher``: queue ``job_ids`` for the next flush."""
        with self._cond:
            if self._closed:
                closed = True
            else:
                closed = False
                self._pending.extend(job_ids)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="idbatch-api-publish", daemon=True)
                    self._thread.start()
                if self._waiting:  # notify() costs a few µs per call; only wake a waiter
                    self._cond.notify()
        if closed:  # after shutdown began: publish at once rather than drop
            self._publish(list(job_ids))

    def _take(self) -> list[int]:
        with self._cond:
            while not self._pending and not self._closed:
                self._waiting = True
                self._cond.wait()
                self._waiting = False
            batch, self._pending = self._pending, []
            return batch

    def _run(self) -> None:
        stop = threading.Event()
        while True:
            batch = self._take()
            if batch:
                self._send(batch)
            with self._cond:
                if self._closed and not self._pending:
                    return
            # Let the next ids gather; this is the whole point (one message per window).
            stop.wait(self.linger_s)

    def _send(self, batch: list[int]) -> None:
        try:
            self._publish(batch)
        except Exception as exc:  # noqa: BLE001 - the rows are committed: the sweeper re-publishes
            log.warning(
                "publishing api jobs failed; the sweeper will re-publish", jobs=len(batch), error=str(exc)
            )

    def close(self) -> None:
        """Stop the thread after publishing everything pending (the app's shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
        with self._cond:
            rest, self._pending = self._pending, []
        if rest:
            self._send(rest)
