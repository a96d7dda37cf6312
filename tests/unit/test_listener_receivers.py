"""The listener's receive slots (``producers.events.Receivers``), without SQS.

They keep ``n`` receives in flight whatever the commit loop is doing, never more; stop
on an empty receive (until idle), on ``max_messages``, on a failed receive; and park
when the commit loop falls behind, instead of hiding ever more messages in memory.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from producers.event_receive import Parsed, Received, Receivers


class FakeQueue:
    """Hands out ``total`` messages, ``per`` at a time; counts receives running at once."""

    def __init__(self, total: int, per: int = 10, delay_s: float = 0.002) -> None:
        self.left, self.per, self.delay_s = total, per, delay_s
        self.lock = threading.Lock()
        self.running = self.most = self.calls = 0

    def receive(self) -> Received:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
            take = min(self.per, self.left)
            self.left -= take
        time.sleep(self.delay_s)
        with self.lock:
            self.running -= 1
        return Received([Parsed({"MessageId": str(i)}) for i in range(take)], time.monotonic())


def _consume(receivers: Receivers) -> int:
    got = 0
    while not receivers.finished():
        try:
            first = receivers.results.get(timeout=0.5)
        except queue.Empty:  # look at finished() again
            continue
        done = [first, *receivers.drain()]
        receivers.unpark()
        got += sum(len(f.result().parsed) for f in done)
    return got


def test_until_idle_every_message_is_handed_over_with_at_most_n_in_flight() -> None:
    fake = FakeQueue(total=503)
    with ThreadPoolExecutor(4) as pool:
        receivers = Receivers(pool, fake.receive, 4, None, True, None)
        receivers.start()
        assert _consume(receivers) == 503
    assert fake.most <= 4 and fake.left == 0


def test_max_messages_stops_the_slots() -> None:
    fake = FakeQueue(total=10_000)
    with ThreadPoolExecutor(3) as pool:
        receivers = Receivers(pool, fake.receive, 3, 100, False, None)
        receivers.start()
        got = _consume(receivers)
    assert 100 <= got <= 100 + 3 * 10  # the receives already in flight complete


def test_a_loop_that_falls_behind_parks_the_slots_then_restarts_them() -> None:
    fake = FakeQueue(total=10_000, delay_s=0.0)
    with ThreadPoolExecutor(2) as pool:
        receivers = Receivers(pool, fake.receive, 2, None, False, None)
        receivers.start()
        time.sleep(0.3)  # nobody takes the results
        assert fake.calls <= 4 * 2 + 2  # parked at 4 n buffered, not receiving on
        first = receivers.results.get()
        receivers.drain()
        receivers.unpark()
        time.sleep(0.1)
        assert fake.calls > 8  # receiving again
        assert first.result().parsed
        receivers.stop_all()
        while not receivers.finished():
            with contextlib.suppress(queue.Empty):
                receivers.results.get(timeout=0.5)


def test_a_failed_receive_stops_the_slots_and_reaches_the_loop() -> None:
    calls = []

    def failing() -> Received:
        calls.append(1)
        raise ConnectionError("SQS is gone")

    with ThreadPoolExecutor(2) as pool:
        receivers = Receivers(pool, failing, 2, None, False, None)
        receivers.start()
        future = receivers.results.get(timeout=5)
        with pytest.raises(ConnectionError):
            future.result()
        while not receivers.finished():
            receivers.results.get(timeout=5)
    assert 1 <= len(calls) <= 2  # no slot receives again after a failure
