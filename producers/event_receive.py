"""The listener's receives: what one brings, and the slots that keep them in flight (issue 19)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from producers.event_parse import Upload
from producers.pairing import Side


@dataclass
class Parsed:
    message: dict[str, Any]
    uploads: list[Upload] = field(default_factory=list)
    poison: str | None = None
    rejected: list[str] = field(default_factory=list)  # records refused beside usable ones
    sides: list[Side] = field(default_factory=list)
    duplicates: int = 0
    sidecars: int = 0
    deferred: bool = False


@dataclass
class Received:
    parsed: list[Parsed]
    received_at: float


class Receivers:
    """``n`` receives kept in flight, each replaced the moment it completes.

    Replacing them from the commit loop left a slot idle for the whole commit (~25 ms
    for 16 events on this box), so receives and commits took turns instead of
    overlapping. Completed receives wait in ``results`` for the commit loop, which takes
    all of them into one transaction; when ``4 n`` are waiting, a completing slot parks
    instead (the messages it would bring could only wait, invisible, behind the others)
    and ``unpark`` restarts it once the loop has taken the buffer.

    A slot stops for good when ``stop`` is set, when ``max_messages`` messages were
    received, when its receive failed (the loop raises the error), or, ``until_idle``,
    when its receive came back empty; the loop ends when every slot has stopped and
    the buffer is empty.
    """

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        receive: Callable[[], Received],
        n: int,
        max_messages: int | None,
        until_idle: bool,
        stop: threading.Event | None,
    ) -> None:
        self.results: queue.SimpleQueue[Future[Received]] = queue.SimpleQueue()
        self._pool, self._receive, self._n = pool, receive, n
        self._max, self._until_idle, self._stop = max_messages, until_idle, stop
        self._lock = threading.Lock()
        self._running = self._parked = self._received = 0
        self._stopped = False

    def start(self) -> None:
        for _ in range(self._n):
            self._submit()

    def _submit(self) -> None:
        with self._lock:
            if self._stopped or (self._stop is not None and self._stop.is_set()):
                return
            self._running += 1
        self._launch()

    def _launch(self) -> None:
        try:
            self._pool.submit(self._receive).add_done_callback(self._completed)
        except RuntimeError:  # the pool is shutting down (the loop raised): no more receives
            with self._lock:
                self._running -= 1
                self._stopped = True

    def _completed(self, future: Future[Received]) -> None:
        # Into the buffer before the slot stops counting as running: ``finished`` must
        # never see a receive that is neither running nor waiting.
        self.results.put(future)
        with self._lock:
            failed = future.exception() is not None
            got = 0 if failed else len(future.result().parsed)
            self._received += got
            if failed or (self._max is not None and self._received >= self._max):
                self._stopped = True
            again = not self._stopped and not (self._stop is not None and self._stop.is_set())
            if again and self._until_idle and got == 0:
                again = False  # this slot found the queue empty
            elif again and self.results.qsize() >= 4 * self._n:
                self._parked += 1
                again = False
            if not again:
                self._running -= 1  # a slot that receives again stays counted throughout
        if again:
            self._launch()

    def stop_all(self) -> None:
        with self._lock:
            self._stopped = True

    def drain(self, gather_s: float = 0.0) -> list[Future[Received]]:
        """Every completed receive waiting now (after one taken from ``results``); with
        ``gather_s``, waiting up to that long for half the slots' worth, so one commit
        carries more messages (its cost is mostly round trips, whatever it carries)."""
        out: list[Future[Received]] = []
        deadline = time.monotonic() + gather_s
        while True:
            try:
                out.append(self.results.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0 or len(out) + 1 >= self._n // 2 or self.finished_running():
                break
            try:
                out.append(self.results.get(timeout=left))
            except queue.Empty:
                break
        return out

    def unpark(self) -> None:
        with self._lock:
            parked, self._parked = self._parked, 0
        for _ in range(parked):
            self._submit()

    def finished_running(self) -> bool:
        """No slot is receiving (nothing more can arrive without an unpark)."""
        with self._lock:
            return self._running == 0

    def finished(self) -> bool:
        with self._lock:
            stopped = self._stopped or (self._stop is not None and self._stop.is_set())
            idle = self._running == 0 and (self._parked == 0 or stopped)
        return idle and self.results.empty()
