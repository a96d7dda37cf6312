"""Retry policy bounds, and synthetic cards carrying their truth."""

from __future__ import annotations

import random

import pytest

from idbatch.idnumber import check
from idbatch.providers import errors
from simulator.cards import Truth, make_identity, read_truth, render
from workers.retry import RetryPolicy


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(max_attempts=6, base_s=1.0, cap_s=10.0)
    rng = random.Random(5)
    for attempt in range(1, 8):
        ceiling = min(10.0, 2 ** (attempt - 1))
        delays = [policy.delay(attempt, errors.Unavailable("x"), rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter really spreads up to the ceiling


def test_retry_after_and_rate_limit_floor() -> None:
    policy = RetryPolicy(base_s=0.01, cap_s=0.02)
    assert policy.delay(1, errors.Unavailable("x", retry_after_s=7.0)) == 7.0
    assert policy.delay(1, errors.RateLimited("x")) >= 1.0


@pytest.mark.parametrize(
    ("exc", "attempt", "expected"),
    [
        (errors.Unavailable("x"), 1, True),
        (errors.RateLimited("x"), 5, True),
        (errors.Unavailable("x"), 6, False),
        (errors.ItemRejected("x"), 1, False),
        (errors.AccountBlocked("x"), 1, False),
    ],
)
def test_should_retry_by_class(exc: errors.ProviderError, attempt: int, expected: bool) -> None:
    assert RetryPolicy(max_attempts=6).should_retry(attempt, exc) is expected


def test_card_images_carry_their_truth() -> None:
    from faker import Faker

    rng = random.Random(11)
    ident = make_identity(rng, Faker("zh_CN"))
    data = render(Truth("front", ident, ["photocopy"]), rng=rng)
    truth = read_truth(data)
    assert truth is not None and truth.identity == ident and truth.variants == ["photocopy"]
    assert check(ident.id_number) == ident.id_number
    assert read_truth(render(None, rng=rng)) is None
    assert read_truth(b"garbage") is None
