"""A two-sided card's BACK takes a rate slot of its own, just before it is sent.

Found by bench/quota.py on OCR and Aliyun: one slot worth FRONT + BACK left BACK's
arrival to FRONT's latency, so BACKs landed between the slots and a strict sliding window
counted more than its quota in some seconds (31-37 refused calls a run). Checked on the
schedule the limiter hands out (``Grant.start``), never on wall-clock time.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from idbatch.providers import errors
from tests.conftest import Env
from tests.ratelimit.conftest import FakeClock
from workers.circuit import CLOSED, Admission, CircuitBreaker
from workers.gate import AccountGate, Line
from workers.ratelimit import Grant, LocalLimiter

KEY = "tencent_ocr:default"


class Recording(LocalLimiter):
    """The local limiter, keeping every grant it hands out."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.grants: list[Grant] = []

    def acquire(self, *args: Any, **kwargs: Any) -> Grant:
        grant = super().acquire(*args, **kwargs)
        self.grants.append(grant)
        return grant


def _gate(env: Env, clock: FakeClock, limiter: LocalLimiter, **settings: str) -> AccountGate:
    values = {"rate_limits": json.dumps({"tencent_ocr": 20}), "rate_headroom": "0", **settings}
    gate = AccountGate(env(**values), limiter, CircuitBreaker(cache_s=1e9), sleep=clock.advance, clock=clock)
    gate.circuit._remember("tencent_ocr", "default", CLOSED, "", None)  # no database in this test
    return gate


def test_interleaved_cards_get_one_slot_per_call(env: Env, clock: FakeClock) -> None:
    limiter = Recording(clock)
    gate = _gate(env, clock, limiter)
    # Two workers' cards, interleaved as threads would: A and B send FRONT, then A and B
    # send BACK once their FRONTs answered.
    a, b = gate.enter("tencent_ocr", "default"), gate.enter("tencent_ocr", "default")
    gate.next_call(a)
    gate.next_call(b)
    starts = [g.start for g in limiter.grants]
    assert len(starts) == 4  # one slot per call, none shared
    gaps = [y - x for x, y in itertools.pairwise(starts)]
    assert all(g == pytest.approx(1 / 20, abs=1e-6) for g in gaps), gaps


def test_a_held_in_flight_lease_is_swapped_not_doubled(env: Env, clock: FakeClock) -> None:
    limiter = LocalLimiter(clock=clock)
    gate = _gate(env, clock, limiter, max_in_flight="1")
    ticket = gate.enter("tencent_ocr", "default")
    first = ticket.lease_id
    assert first is not None
    gate.next_call(ticket)  # the cap is 1 and this thread holds it: BACK still gets a slot
    assert ticket.lease_id not in (None, first)
    with ticket:
        pass
    assert gate.enter("tencent_ocr", "default").defer_s is None  # the BACK's lease was released


def test_no_slot_soon_for_the_back_raises_deferred(env: Env, clock: FakeClock) -> None:
    limiter = LocalLimiter(clock=clock)
    gate = _gate(env, clock, limiter, ratelimit_max_wait_s="0.2")
    ticket = gate.enter("tencent_ocr", "default")
    for _ in range(4):  # other threads' FRONTs take the next 0.2 s of slots
        limiter.acquire(KEY, gate.policy("tencent_ocr", "default"), f"other-{_}")
    with pytest.raises(errors.Deferred) as deferred:
        gate.next_call(ticket)
    assert deferred.value.side == "back"
    assert deferred.value.retry_after_s is not None and deferred.value.retry_after_s >= 0.2


def test_the_line_hands_seats_over_in_order_and_a_later_call_goes_first() -> None:
    line = Line(1)
    assert line.enter(0.0)  # the one seat
    order: list[str] = []

    def wait(name: str, urgent: bool) -> None:
        assert line.enter(10.0, urgent=urgent)
        order.append(name)
        line.leave()

    def queued(n: int) -> None:
        deadline = time.monotonic() + 5
        while len(line._waiting) < n:
            assert time.monotonic() < deadline, "a thread never queued"
            time.sleep(0.001)

    threads = []
    for n, (name, urgent) in enumerate([("front-1", False), ("front-2", False), ("back", True)], 1):
        threads.append(threading.Thread(target=wait, args=(name, urgent)))
        threads[-1].start()
        queued(n)  # arrivals in a known order
    assert order == []  # nobody passes a held seat
    line.leave()
    for t in threads:
        t.join(5)
    assert order == ["back", "front-1", "front-2"]  # urgent first, then first come first served


def test_no_turn_in_the_line_defers_the_job(env: Env, clock: FakeClock) -> None:
    limiter = LocalLimiter(clock=clock)
    gate = _gate(env, clock, limiter, ratelimit_local_slots="1", ratelimit_line_wait_s="0")
    line = gate._line(KEY)
    assert line is not None and line.enter(0.0)  # another thread of this process holds the seat
    ticket = gate.enter("tencent_ocr", "default")
    assert ticket.defer_s is not None and ticket.error_class == "throttled"
    assert "line" in ticket.reason
    assert limiter.events[(KEY, "deferred_line")] == 1
    line.leave()
    assert gate.enter("tencent_ocr", "default").defer_s is None


def test_without_the_line_every_thread_asks_the_limiter(env: Env, clock: FakeClock) -> None:
    gate = _gate(env, clock, LocalLimiter(clock=clock), ratelimit_local_slots="0")
    assert gate._line(KEY) is None
    assert gate.enter("tencent_ocr", "default").defer_s is None


class Failing(LocalLimiter):
    """Answers the first acquire, then fails as a Redis outage would."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.calls = 0

    def acquire(self, *args: Any, **kwargs: Any) -> Grant:
        self.calls += 1
        if self.calls > 1:
            raise ConnectionError("redis went away")
        return super().acquire(*args, **kwargs)


def test_a_limiter_failure_before_the_back_is_a_deferral_not_a_crash(env: Env, clock: FakeClock) -> None:
    """FRONT is paid by then: the error must reach the adapter as a ProviderError (keeps FRONT)."""
    gate = _gate(env, clock, Failing(clock))
    ticket = gate.enter("tencent_ocr", "default")
    with pytest.raises(errors.Deferred) as deferred:
        gate.next_call(ticket)
    assert isinstance(deferred.value.__cause__, ConnectionError)


def test_a_probing_front_closes_the_circuit_even_when_its_back_is_deferred(
    env: Env, clock: FakeClock
) -> None:
    limiter = LocalLimiter(clock=clock)
    gate = _gate(env, clock, limiter, ratelimit_max_wait_s="0.2")
    # The circuit's half-open state lives in the database; this gate test takes its verdict.
    probe = SimpleNamespace(admission=Admission.PROBE, retry_in_s=None, reason="")
    gate.circuit.admit = lambda provider, account: probe  # type: ignore[method-assign,assignment,return-value]
    closed: list[tuple[str, str]] = []
    gate.circuit.probe_answered = lambda provider, account: closed.append((provider, account))  # type: ignore[method-assign]
    ticket = gate.enter("tencent_ocr", "default")
    assert ticket.probing
    for i in range(4):
        limiter.acquire(KEY, gate.policy("tencent_ocr", "default"), f"other-{i}")
    with pytest.raises(errors.Deferred), ticket:
        gate.next_call(ticket)
    assert closed == [("tencent_ocr", "default")]
