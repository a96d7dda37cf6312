"""The limiter's schedule, in-flight cap and AIMD feedback, local and on the real Redis.

Grants are reservations carrying the limiter clock's slot time (``Grant.start``), so
the tests check the *schedule* the limiter hands out, counted per window, without
sleeping and without measuring wall-clock durations.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import uuid

import pytest
import redis

from tests.conftest import Env
from tests.ratelimit.conftest import FakeClock
from workers.circuit import CircuitBreaker
from workers.gate import AccountGate
from workers.ratelimit import (
    GRANTED,
    TOO_FAR,
    TOO_MANY,
    Limiter,
    LocalLimiter,
    Policy,
    RedisLimiter,
)

KEY = "acedata:default"


def _max_in_any_window(starts: list[float], window_s: float = 1.0) -> int:
    """The largest number of slots inside any half-open window [t, t + window_s)."""
    starts = sorted(starts)
    best, j = 0, 0
    for i, start in enumerate(starts):
        while starts[j] <= start - window_s + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


def _grab(limiter: Limiter, policy: Policy, n: int, out: list[float]) -> None:
    for _ in range(n):
        grant = limiter.acquire(KEY, policy, uuid.uuid4().hex)
        assert grant.status == GRANTED
        out.append(grant.start)


def test_threads_never_get_more_than_the_ceiling_in_any_second(limiter: Limiter) -> None:
    policy = Policy(quota=100, headroom=0.02, max_wait_s=1000)
    starts: list[float] = []
    threads = [threading.Thread(target=_grab, args=(limiter, policy, 60, starts)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(starts) == 300
    assert _max_in_any_window(starts) == 98  # quota 100 less 2 % headroom
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
    assert min(gaps) >= 1 / 98 - 2e-6


def _grab_in_process(url: str, prefix: str, n: int, queue: multiprocessing.Queue[list[float]]) -> None:
    limiter = RedisLimiter(redis.Redis.from_url(url), prefix)
    out: list[float] = []
    _grab(limiter, Policy(quota=50, headroom=0.0, max_wait_s=1000), n, out)
    queue.put(out)


def test_processes_share_one_schedule_through_redis(redis_url: str, redis_limiter: RedisLimiter) -> None:
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[float]] = ctx.Queue()
    prefix = redis_limiter._prefix
    procs = [ctx.Process(target=_grab_in_process, args=(redis_url, prefix, 40, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    starts = [s for _ in procs for s in queue.get(timeout=60)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(starts) == 120
    assert _max_in_any_window(starts) == 50


def test_a_token_beyond_max_wait_is_refused_and_not_consumed(limiter: Limiter) -> None:
    policy = Policy(quota=10, headroom=0.0, max_wait_s=0.55)
    grants = [limiter.acquire(KEY, policy, str(i)) for i in range(8)]
    statuses = [g.status for g in grants]
    assert statuses == [GRANTED] * 6 + [TOO_FAR] * 2  # waits 0, 0.1 … 0.5, then 0.6 > 0.55
    assert grants[6].start == pytest.approx(grants[7].start, abs=1e-6)  # refusal reserves nothing
    assert grants[7].wait_s > 0.55 - 0.05


def test_in_flight_cap_and_release(limiter: Limiter) -> None:
    policy = Policy(quota=0, max_in_flight=3, lease_s=60)
    assert [limiter.acquire(KEY, policy, f"l{i}").status for i in range(4)] == [GRANTED] * 3 + [TOO_MANY]
    limiter.release(KEY, "l1")
    assert limiter.acquire(KEY, policy, "l4").status == GRANTED
    assert limiter.acquire(KEY, policy, "l5").status == TOO_MANY


def test_a_dead_workers_lease_expires(clock: FakeClock) -> None:
    limiter = LocalLimiter(clock)
    policy = Policy(quota=0, max_in_flight=1, lease_s=30)
    assert limiter.acquire(KEY, policy, "dead").status == GRANTED
    assert limiter.acquire(KEY, policy, "next").status == TOO_MANY
    clock.advance(31)
    assert limiter.acquire(KEY, policy, "next").status == GRANTED


def test_a_dead_workers_lease_expires_in_redis(redis_limiter: RedisLimiter) -> None:
    policy = Policy(quota=0, max_in_flight=1, lease_s=0.05)
    assert redis_limiter.acquire(KEY, policy, "dead").status == GRANTED
    first = redis_limiter.acquire(KEY, policy, "next")
    assert first.status == TOO_MANY
    threading.Event().wait(first.wait_s + 0.05)  # past the lease's expiry on the server clock
    assert redis_limiter.acquire(KEY, policy, "next").status == GRANTED


def test_rate_limited_cuts_the_rate_once_per_cooldown(clock: FakeClock) -> None:
    limiter = LocalLimiter(clock)
    policy = Policy(quota=100, headroom=0.0, cooldown_s=1.0, decrease=0.5)
    assert limiter.throttled(KEY, policy, None) == 50
    assert limiter.throttled(KEY, policy, None) == 50  # the same congestion, reported again
    clock.advance(1.0)
    assert limiter.throttled(KEY, policy, None) == 25
    for _ in range(20):
        clock.advance(1.0)
        limiter.throttled(KEY, policy, None)
    assert limiter.throttled(KEY, policy, None) == policy.floor == 5


def test_successes_raise_the_rate_additively_up_to_the_ceiling(clock: FakeClock) -> None:
    limiter = LocalLimiter(clock)
    policy = Policy(quota=100, headroom=0.02, recovery_s=20, decrease=0.5)
    assert limiter.throttled(KEY, policy, None) == pytest.approx(49)
    # At rate r each success adds increase_per_s / r, so r successes (about one second of
    # calls) add increase_per_s = ceiling / recovery_s calls/s.
    assert limiter.success(KEY, policy) == pytest.approx(49 + 4.9 / 49)
    rates = [limiter.success(KEY, policy) for _ in range(2000)]
    assert rates == sorted(rates)
    assert max(rates) == pytest.approx(98)
    assert rates[-1] == pytest.approx(98)
    assert all(r <= 98 for r in rates)


def test_the_lowered_rate_spaces_the_grants(limiter: Limiter) -> None:
    policy = Policy(quota=100, headroom=0.0, max_wait_s=1000, cooldown_s=60, decrease=0.5)
    limiter.throttled(KEY, policy, None)
    starts: list[float] = []
    _grab(limiter, policy, 60, starts)
    assert _max_in_any_window(starts) == 50


def test_redis_aimd_is_shared_state(redis_limiter: RedisLimiter) -> None:
    policy = Policy(quota=100, headroom=0.0, cooldown_s=60, decrease=0.5, recovery_s=20)
    assert redis_limiter.throttled(KEY, policy, None) == 50
    assert redis_limiter.throttled(KEY, policy, None) == 50  # within the cooldown
    assert redis_limiter.success(KEY, policy) == pytest.approx(50 + 5 / 50)
    for _ in range(5000):
        rate = redis_limiter.success(KEY, policy)
        if rate >= 100:
            break
    assert rate == 100
    grant = redis_limiter.acquire(KEY, policy, "x")
    assert grant.rate == 100


def test_retry_after_pauses_the_whole_account(limiter: Limiter) -> None:
    policy = Policy(quota=100, max_wait_s=2.0)
    limiter.throttled(KEY, policy, 30.0)
    grant = limiter.acquire(KEY, policy, "x")
    assert grant.status == TOO_FAR
    assert grant.wait_s > 29
    other = limiter.acquire("acedata:other", policy, "y")
    assert other.status == GRANTED
    assert other.wait_s == 0


def test_unlimited_accounts_still_honour_retry_after(limiter: Limiter) -> None:
    policy = Policy(quota=0)
    assert all(limiter.acquire(KEY, policy, str(i)).wait_s == 0 for i in range(50))
    limiter.throttled(KEY, policy, 10.0)
    assert limiter.acquire(KEY, policy, "z").status == TOO_FAR


def _late_gate(env: Env, limiter: LocalLimiter, clock: FakeClock, lateness: list[float]) -> AccountGate:
    delays = iter(lateness)

    def sleep(seconds: float) -> None:
        clock.advance(seconds + next(delays))

    settings = env(rate_limits=json.dumps({"acedata": 10}), rate_headroom="0.02", max_in_flight="50")
    gate = AccountGate(settings, limiter, CircuitBreaker(cache_s=1e9), sleep=sleep, clock=clock)
    gate.circuit._remember("acedata", "default", "closed", "", None)  # no database in this test
    return gate


def test_a_late_wake_up_moves_the_rest_of_the_schedule_back(env: Env) -> None:
    clock = FakeClock()
    limiter = LocalLimiter(clock)
    gate = _late_gate(env, limiter, clock, [0.05])  # woken 50 ms late: a loaded machine
    policy = gate.policy("acedata", "default")
    first = limiter.acquire(KEY, policy, "earlier")
    ticket = gate.enter("acedata", "default")  # slot at +1/rate, used 50 ms late
    assert ticket.defer_s is None
    assert limiter.events[(KEY, "shifted_late")] == 1
    late_arrival = first.start + 1 / policy.ceiling + 0.05
    following = limiter.acquire(KEY, policy, "next")
    # Lateness up to late_s is the worker's share of the headroom; the excess moves the schedule.
    assert following.start >= late_arrival - policy.late_s + 1 / policy.ceiling - 1e-9


def test_a_late_wake_up_gives_the_slot_up_when_a_window_of_slots_is_already_out(env: Env) -> None:
    clock = FakeClock()
    limiter = LocalLimiter(clock)
    gate = _late_gate(env, limiter, clock, [])
    policy = gate.policy("acedata", "default")
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:  # while we sleep, other workers reserve more than a window
            for i in range(11):
                limiter.acquire(KEY, Policy(quota=10, headroom=0.02, max_wait_s=100), f"other{i}")
            clock.advance(seconds + 0.05)  # and we wake 50 ms late
        else:
            clock.advance(seconds)

    gate._sleep = sleep
    limiter.acquire(KEY, policy, "earlier")
    ticket = gate.enter("acedata", "default")
    assert ticket.defer_s is None
    assert limiter.events[(KEY, "voided_late")] == 1
    assert limiter.events[(KEY, "shifted_late")] == 0
    assert len(sleeps) == 2  # a fresh slot after the others


def test_redis_late_shift(redis_limiter: RedisLimiter) -> None:
    policy = Policy(quota=10, headroom=0.0, max_wait_s=1000)
    grants = [redis_limiter.acquire(KEY, policy, str(i)) for i in range(3)]
    assert redis_limiter.late(KEY, policy, grants[0].start, 0.05) is True  # 2 slots ahead < 1 s
    following = redis_limiter.acquire(KEY, policy, "next")
    assert following.start == pytest.approx(grants[2].start + 0.1 + 0.05, abs=1e-5)
    more = [redis_limiter.acquire(KEY, policy, f"m{i}") for i in range(12)]
    assert more[-1].start - grants[0].start > 1.0
    assert redis_limiter.late(KEY, policy, grants[0].start, 0.05) is False  # a window is out


def _events(limiter: Limiter) -> dict[str, int]:
    if isinstance(limiter, RedisLimiter):
        return limiter.events(KEY)
    assert isinstance(limiter, LocalLimiter)
    return {event: n for (key, event), n in limiter.events.items() if key == KEY and n}


def test_a_refused_late_slot_frees_its_lease_and_both_outcomes_are_counted(limiter: Limiter) -> None:
    """``late`` counts what it did, and a slot it gives up no longer holds an in-flight lease.

    One script call on Redis does what took three (late, release, the event count); the cap
    must still see the refused slot's lease gone, or a loaded machine would leak in-flight
    capacity until the leases expire.
    """
    policy = Policy(quota=10, headroom=0.0, max_wait_s=1000, max_in_flight=13, lease_s=60)
    grants = [limiter.acquire(KEY, policy, f"g{i}") for i in range(3)]
    assert limiter.late(KEY, policy, grants[0].start, 0.05, "g0") is True  # 2 slots ahead: shifted
    assert _events(limiter) == {"shifted_late": 1}
    more = [limiter.acquire(KEY, policy, f"m{i}") for i in range(10)]
    assert all(g.status == GRANTED for g in more)
    assert limiter.acquire(KEY, policy, "full").status == TOO_MANY  # 13 leases held
    assert limiter.late(KEY, policy, grants[1].start, 0.05, "g1") is False  # a window is out: refused
    assert _events(limiter) == {"shifted_late": 1, "voided_late": 1}
    assert limiter.acquire(KEY, policy, "after").status == GRANTED  # g1's lease was released


def test_acquire_releases_the_lease_it_is_given_first(limiter: Limiter) -> None:
    policy = Policy(quota=0, max_in_flight=1, lease_s=60)
    assert limiter.acquire(KEY, policy, "first").status == GRANTED
    assert limiter.acquire(KEY, policy, "second").status == TOO_MANY
    # the same thread's next call: its previous lease goes in the same step, then the cap counts
    assert limiter.acquire(KEY, policy, "second", release="first").status == GRANTED
    assert limiter.acquire(KEY, policy, "third").status == TOO_MANY


def _held_gate(env: Env, limiter: Limiter) -> AccountGate:
    settings = env(rate_limits=json.dumps({"acedata": 0}), max_in_flight="1")
    gate = AccountGate(settings, limiter, CircuitBreaker(cache_s=1e9))
    gate.circuit._remember("acedata", "default", "closed", "", None)  # no database in this test
    return gate


def test_a_held_release_rides_on_the_next_acquire_and_the_cap_never_undercounts(
    env: Env, limiter: Limiter
) -> None:
    gate = _held_gate(env, limiter)
    released: list[str] = []
    real_release = limiter.release

    def counting_release(key: str, lease_id: str) -> None:
        released.append(lease_id)
        real_release(key, lease_id)

    limiter.release = counting_release  # type: ignore[method-assign]
    policy = gate.policy("acedata", "default")
    with gate.holding_releases():
        for _ in range(3):  # one thread, three calls in a row under a cap of one
            with gate.enter("acedata", "default") as ticket:
                assert ticket.defer_s is None
            # the call ended, its lease is still counted: another thread would wait
            assert limiter.acquire(KEY, policy, "other").status == TOO_MANY
        assert released == []  # no release call of its own: each rode on the next acquire
    assert len(released) == 1  # leaving the block released the last one
    assert limiter.acquire(KEY, policy, "other").status == GRANTED


def test_without_holding_a_call_releases_its_lease_at_once(env: Env, limiter: Limiter) -> None:
    gate = _held_gate(env, limiter)
    with gate.enter("acedata", "default") as ticket:
        assert ticket.defer_s is None
    assert limiter.acquire(KEY, gate.policy("acedata", "default"), "other").status == GRANTED

