"""Who may call, and how often: API key auth (cached) and per-tenant quotas, shared by API processes.

- Auth is ``Authorization: Bearer idb_…``; an unknown, malformed or revoked key is 401.
- Verified keys are cached per process (``AuthCache``, ``api_auth_cache_s``) so a request
  does not cost a database transaction. With Redis (``db.api_shared``) every cached key is
  tagged with the revocation epoch read before its lookup and checked against the current
  epoch on every request: a key revoked anywhere (``db.tenants.revoke_key`` bumps the
  epoch after its commit) is refused by the **very next** request in every process.
- Quota: one token bucket per tenant in Redis for all API processes (``api_quota_per_s``,
  burst ``api_quota_burst``, or the tenant's own ``quota_per_s``); over it is 429 with
  ``Retry-After``. The epoch and the token come back from one script call: one Redis
  round trip per request, no database read.
- Without Redis (``api_shared_url=off``, the in-memory broker) both are per process: a
  revocation is seen within ``api_auth_cache_s``, N processes allow N times the rate.
  If Redis fails, the gate does not trust its cache (a key lookup per request, so a
  revocation still takes effect at once) and counts quota per process, until Redis
  answers again (tried again after ``RETRY_S``).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable

from db.api_shared import SharedState, Take, shared_state
from db.tenants import Principal, authenticate
from idbatch.logging import get_logger
from idbatch.settings import Settings
from producers.api.http import HTTPProblem

log = get_logger(__name__)


class _Bucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, time.monotonic()

    def take(self) -> float:
        """0 if a request may go now, else the seconds until it may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def over_quota(rate: float, wait: float) -> HTTPProblem:
    return HTTPProblem(
        429,
        "Too many requests",
        f"over this tenant's quota of {rate:g} requests/s",
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


class Quotas:
    """Per-tenant token buckets of this process (without Redis, or while it fails)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    def rate(self, principal: Principal) -> float:
        return principal.quota_per_s if principal.quota_per_s is not None else self._settings.api_quota_per_s

    def burst(self) -> float:
        return max(self._settings.api_quota_burst, 1)

    def check(self, principal: Principal) -> None:
        rate = self.rate(principal)
        if rate <= 0:
            return
        with self._lock:
            bucket = self._buckets.get(principal.tenant_id)
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[principal.tenant_id] = _Bucket(rate, self.burst())
            wait = bucket.take()
        if wait > 0:
            raise over_quota(rate, wait)


class AuthCache:
    """Verified API keys of this process, each for ``ttl_s`` and tagged with an epoch.

    Looking a key up costs a transaction per request (an eighth of a single card's CPU).
    Only successes are remembered, keyed by the sha256 of the whole presented token, so a
    wrong secret never matches a remembered key. ``lookup`` alone (no Redis) has bounded
    staleness: a key revoked in the database takes effect here within ``ttl_s``; the
    ``Gate`` adds the epoch check that makes it immediate. ``clock`` is injectable so the
    tests can move time instead of sleeping.
    """

    MAX_ENTRIES = 10_000  # a bound, not an LRU: past it the cache starts over

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self._clock = ttl_s, clock
        self._entries: dict[bytes, tuple[Principal, float, int]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def cached(self, token: str) -> tuple[Principal, int] | None:
        """The principal remembered for ``token`` within its TTL, and the epoch it was loaded at."""
        if self.ttl_s <= 0:
            return None
        hit = self._entries.get(self._digest(token))
        if hit is None or hit[1] <= self._clock():
            return None
        return hit[0], hit[2]

    def store(self, token: str, found: Principal | None, epoch: int = 0) -> None:
        if self.ttl_s <= 0:
            return
        digest = self._digest(token)
        with self._lock:
            if found is None:
                self._entries.pop(digest, None)
            else:
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.clear()
                self._entries[digest] = (found, self._clock() + self.ttl_s, epoch)

    def lookup(self, token: str, load: Callable[[str], Principal | None] = authenticate) -> Principal | None:
        """The TTL-only cache (no epoch): ``load`` at most once per key per ``ttl_s``."""
        hit = self.cached(token)
        if hit is not None:
            return hit[0]
        found = load(token)
        self.store(token, found)
        return found


class Gate:
    """Auth and quota of one request: ``admit(token)`` is the principal, or raises 401 / 429."""

    RETRY_S = 1.0  # after a Redis failure, per-process mode for this long before trying again

    def __init__(
        self,
        settings: Settings,
        shared: SharedState | None = None,
        *,
        load: Callable[[str], Principal | None] = authenticate,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = AuthCache(settings.api_auth_cache_s, clock)
        self.local = Quotas(settings)
        self.shared, self._load, self._clock = shared, load, clock
        self._down_until = 0.0

    @classmethod
    def for_settings(cls, settings: Settings) -> Gate:
        return cls(settings, shared_state(settings))

    def _redis(self) -> SharedState | None:
        if self.shared is None or self._clock() < self._down_until:
            return None
        return self.shared

    def _failed(self, exc: Exception) -> None:
        self._down_until = self._clock() + self.RETRY_S
        log.warning(
            "shared API state unavailable: keys looked up per request, quotas per process",
            error=type(exc).__name__,
        )

    def _take(self, shared: SharedState, principal: Principal) -> Take | None:
        import redis

        try:
            return shared.take(principal.tenant_id, self.local.rate(principal), self.local.burst())
        except redis.RedisError as exc:
            self._failed(exc)
            return None

    def _admit_quota(self, principal: Principal, took: Take | None) -> Principal:
        if took is None:
            self.local.check(principal)
        elif took.wait_s > 0:
            raise over_quota(self.local.rate(principal), took.wait_s)
        return principal

    def admit(self, token: str) -> Principal:
        shared = self._redis()
        if shared is None:
            if self.shared is None:  # no Redis configured: the TTL cache and local buckets
                return self._admit_quota(self._known(self.cache.lookup(token, self._load)), None)
            return self._admit_quota(self._known(self._load(token)), None)  # Redis failing
        hit = self.cache.cached(token)
        took: Take | None = None
        if hit is not None:
            took = self._take(shared, hit[0])
            if took is None:  # Redis failed just now: trust nothing cached
                return self._admit_quota(self._known(self._load(token)), None)
            if took.epoch == hit[1]:
                return self._admit_quota(hit[0], took)
            # The epoch moved (a key was revoked somewhere): look this one up again. The
            # epoch came back with the token, i.e. was read before the lookup below.
            epoch = took.epoch
        else:
            import redis

            try:
                epoch = shared.epoch()  # read BEFORE the lookup: a revocation after it moves it
            except redis.RedisError as exc:
                self._failed(exc)
                return self._admit_quota(self._known(self._load(token)), None)
        found = self._load(token)
        self.cache.store(token, found, epoch)
        principal = self._known(found)
        return self._admit_quota(principal, took if took is not None else self._take(shared, principal))

    @staticmethod
    def _known(found: Principal | None) -> Principal:
        if found is None:
            raise HTTPProblem(
                401,
                "Unauthorized",
                "a valid API key is required (Authorization: Bearer idb_…)",
                headers={"WWW-Authenticate": 'Bearer realm="idbatch"'},
            )
        return found


def bearer(header: str) -> str:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def principal_of(header: str, gate: Gate) -> Principal:
    """The principal behind an ``Authorization`` header value (401 / 429 as ``HTTPProblem``)."""
    token = bearer(header)
    if not token:
        return Gate._known(None)
    return gate.admit(token)
