"""A slot worth several calls moves the schedule by ``calls / rate``.

The worker no longer asks for such slots (a two-sided card's BACK takes a slot of its own,
tests/ratelimit/test_two_sided_pacing.py); the limiter keeps the parameter for a caller
that sends several calls at one moment. Checked on the schedule the limiter hands out
(``Grant.start``), never on wall-clock time.
"""

from __future__ import annotations

import itertools
import uuid

from workers.ratelimit import GRANTED, Limiter, Policy

KEY = "tencent_ocr:default"


def _starts(limiter: Limiter, policy: Policy, calls: list[int]) -> list[float]:
    out = []
    for n in calls:
        grant = limiter.acquire(KEY, policy, uuid.uuid4().hex, n)
        assert grant.status == GRANTED
        out.append(grant.start)
    return out


def test_a_two_call_slot_moves_the_schedule_twice_as_far(limiter: Limiter) -> None:
    policy = Policy(quota=20, headroom=0.0, max_wait_s=1000)
    starts = _starts(limiter, policy, [2, 2, 1, 2, 1])
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # after a 2-call slot the next is 2/20 s later, after a 1-call slot 1/20 s
    expected = [0.1, 0.1, 0.05, 0.1]
    assert all(abs(g - e) < 1e-3 for g, e in zip(gaps, expected, strict=True)), gaps


def test_calls_per_second_stay_within_the_quota_with_two_sided_cards(limiter: Limiter) -> None:
    policy = Policy(quota=20, headroom=0.02, max_wait_s=1000)
    starts = _starts(limiter, policy, [2] * 30)
    # 30 cards, 60 calls at 19.6 calls/s: the schedule spans 29 slots of 2 / 19.6 s each
    span = starts[-1] - starts[0]
    assert abs(span - 29 * 2 / 19.6) < 1e-2, span
    cards_in_first_second = sum(1 for s in starts if s < starts[0] + 1.0)
    assert cards_in_first_second == 10  # 10 cards = 20 calls in [t, t + 1)
