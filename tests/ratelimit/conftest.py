"""Limiter fixtures: the same tests run against the local and the Redis implementation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from workers.ratelimit import Limiter, LocalLimiter, RedisLimiter


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_limiter(redis_url: str) -> Iterator[RedisLimiter]:
    client = redis.Redis.from_url(redis_url)
    prefix = f"idbatch:test:rl:{uuid.uuid4().hex[:8]}"
    yield RedisLimiter(client, prefix)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["local", "redis"])
def limiter(request: pytest.FixtureRequest) -> Limiter:
    """Both implementations; only behaviour that does not need a controlled clock."""
    if request.param == "local":
        return LocalLimiter()
    return request.getfixturevalue("redis_limiter")  # type: ignore[no-any-return]
