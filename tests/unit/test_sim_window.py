"""The simulator's quota: a strict sliding one-second window over arrival times."""

from __future__ import annotations

from simulator.state import SlidingWindow


def test_admits_quota_calls_per_second_and_refuses_the_next() -> None:
    window = SlidingWindow(quota=10)
    assert all(window.admit(i * 0.05) for i in range(10))  # 10 calls in 0.45 s
    assert not window.admit(0.5)
    assert not window.admit(0.999)
    assert window.admit(1.0)  # the call at 0.0 left the window: (0.0, 1.0]
    assert not window.admit(1.01)


def test_evenly_spaced_calls_just_under_the_quota_all_pass_and_over_it_do_not() -> None:
    under, over = SlidingWindow(quota=100), SlidingWindow(quota=100)
    assert all(under.admit(i / 99.5) for i in range(1000))
    assert not all(over.admit(i / 100.5) for i in range(1000))


def test_a_late_processed_arrival_is_judged_at_its_arrival_time() -> None:
    window = SlidingWindow(quota=3)
    assert window.admit(0.0)
    assert window.admit(0.9)
    assert window.admit(1.5)
    # processed after the call at 1.5, but arrived at 0.95: (−0.05, 0.95] already holds 2
    assert window.admit(0.95)
    # arrived at 0.96: (−0.04, 0.96] holds 0.0, 0.9 and 0.95 -> refused
    assert not window.admit(0.96)
    # 1.6: (0.6, 1.6] holds 0.9, 0.95 and 1.5 -> refused; 2.0: (1.0, 2.0] holds only 1.5
    assert not window.admit(1.6)
    assert window.admit(2.0)


def test_a_late_arrival_may_not_overfill_a_window_ending_at_a_later_call() -> None:
    window = SlidingWindow(quota=2)
    assert window.admit(0.9)
    assert window.admit(1.5)
    # arrived at 1.0: (0.0, 1.0] holds only 0.9, but (0.5, 1.5] would hold 0.9, 1.0 and 1.5
    assert not window.admit(1.0)
    assert window.admit(2.0)  # (1.0, 2.0] holds 1.5 and 2.0


def test_out_of_order_arrivals_never_put_more_than_quota_in_any_second() -> None:
    import random

    rng = random.Random(5)
    window = SlidingWindow(quota=20)
    arrivals = sorted(rng.uniform(0, 10) for _ in range(600))
    processed = sorted(arrivals, key=lambda t: t + rng.uniform(0, 0.05))  # up to 50 ms late
    admitted = sorted(t for t in processed if window.admit(t))
    assert max(sum(1 for s in admitted if t - 1 < s <= t) for t in admitted) <= 20
    assert len(admitted) >= 180  # not refusing everything: ~20/s over 10 s


def test_old_stamps_are_dropped() -> None:
    window = SlidingWindow(quota=5)
    for i in range(10_000):
        assert window.admit(i * 0.25)
    assert len(window._stamps) <= 41  # the last 10 s
