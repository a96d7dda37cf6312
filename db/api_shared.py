"""State every API process shares, in Redis: the key-revocation epoch and per-tenant quota buckets.

- **Revocation epoch** (``<prefix>:auth_epoch``; the prefix is ``api_shared_prefix``,
  default ``idbatch:api:<queue>``): an integer bumped (``INCR``) after every
  committed key revocation. Each API process tags the keys it caches with the epoch it
  read *before* looking the key up in the database, and compares the tag with the current
  epoch on every request; a different epoch drops the entry and looks the key up again.
  A revocation is therefore seen by the very next request in every process, with no
  database read per request (one Redis round trip, which the quota needs anyway).
- **Quota** (``<prefix>:quota:<tenant id>``): one token bucket per tenant for all API
  processes, refilled from Redis' own clock (``TIME``), so N processes allow the tenant's
  rate once, not N times.

Both are one Lua script call per request (``take``): the bucket's token and the epoch in
one round trip. Redis errors are the caller's to handle (``producers.api.http.Gate`` falls
back to a database lookup per request and per-process buckets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from idbatch.logging import get_logger
from idbatch.settings import Settings, get_settings

if TYPE_CHECKING:
    import redis

log = get_logger(__name__)

# KEYS: epoch, bucket; ARGV: rate (tokens/s, <= 0: no quota), burst. Returns {wait_s, epoch}
# as strings (Lua numbers would come back truncated to integers).
_TAKE = """
local epoch = redis.call('GET', KEYS[1]) or '0'
local rate = tonumber(ARGV[1])
if rate <= 0 then return {'0', epoch} end
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[2], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[2], 'tokens', string.format('%.6f', tokens), 'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[2], math.ceil(burst / rate * 1000) + 1000)
return {string.format('%.6f', wait), epoch}
"""


@dataclass(frozen=True)
class Take:
    wait_s: float  # 0: the request may go; else seconds until a token is there
    epoch: int


class SharedState:
    """The Redis side of API auth and quotas; every method raises ``redis.RedisError`` on failure."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix
        self._epoch_key = f"{prefix}:auth_epoch"
        self._take = client.register_script(_TAKE)

    def epoch(self) -> int:
        return int(self.client.get(self._epoch_key) or 0)

    def bump(self) -> int:
        return int(self.client.incr(self._epoch_key))

    def take(self, tenant_id: int, rate: float, burst: float) -> Take:
        wait, epoch = self._take(
            keys=[self._epoch_key, f"{self.prefix}:quota:{tenant_id}"], args=[rate, burst]
        )
        return Take(float(wait), int(epoch))


def shared_url(settings: Settings) -> str | None:
    """The Redis URL of the shared API state, or None (``api_shared_url=off`` or no Redis)."""
    url = settings.api_shared_url or settings.ratelimit_url or settings.broker_url
    if url == "off" or not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return url


def shared_state(settings: Settings) -> SharedState | None:
    """A client for ``settings`` (short timeouts: a request must not hang on Redis)."""
    url = shared_url(settings)
    if url is None:
        return None
    import redis

    client = redis.Redis.from_url(
        url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
    )
    return SharedState(client, settings.api_shared_prefix or f"idbatch:api:{settings.queue}")


def bump_auth_epoch(settings: Settings | None = None) -> bool:
    """Tell every API process to look its cached keys up again (after a revocation commits).

    False when there is no shared state or Redis failed: then API processes see the change
    within ``api_auth_cache_s`` (their cache's TTL), as before this existed.
    """
    state = shared_state(settings or get_settings())
    if state is None:
        return False
    import redis

    try:
        state.bump()
    except redis.RedisError as exc:
        log.warning(
            "could not bump the API auth epoch; other API processes see the change within api_auth_cache_s",
            error=type(exc).__name__,
        )
        return False
    finally:
        state.client.close()
    return True
