"""One rate limit per provider account, shared by every worker, with AIMD feedback.

The seam is ``Limiter`` (a Protocol) with two implementations chosen by configuration:

- ``RedisLimiter``: the state lives in Redis and every operation is one Lua script
  (``ratelimit.lua``) run atomically on the server with the server's clock, so any
  number of worker processes on any number of machines share one schedule.
- ``LocalLimiter``: the same algorithm under a lock, for the embedded mode (one
  process, in-memory broker, no Redis).

The algorithm is GCRA with a burst of one (a token bucket of depth 1 written as a
"theoretical arrival time"): grants are spaced at least ``1/rate`` apart. Providers
such as our simulator count calls in *any* sliding one-second window, so a deeper
bucket would let a burst plus a full second's worth through and be refused; spacing
the calls evenly is the only shape that passes a strict window. The rate is the quota
less a small ``headroom`` that absorbs the jitter between a grant and the call's
arrival at the provider (see docs/throughput.md for the arithmetic).

A grant is a *reservation*: the script answers "call at now + wait". The worker sleeps
that long inside its slot before calling. That short wait is deliberate: every other
job for the same account would need the same token, so the thread could do nothing
useful with it, and the wait is bounded twice: by ``max_wait_s`` (beyond that the
script refuses and the job goes back to ``retry_wait`` without spending an attempt,
freeing the slot) and, in steady state, by (threads waiting)/rate — e.g. 60 waiting
threads at 100 calls/s wait 0.6 s. Nothing polls, so nothing busy-spins.

Calls in flight are capped per account by a semaphore of expiring leases (a sorted set
scored by expiry): a worker killed mid-call leaks its slot only until the lease expires.

Feedback (AIMD, as TCP): a ``RateLimited`` answer multiplies the account's effective
rate by ``decrease`` (once per ``cooldown_s``, because the calls already in flight
report the same congestion), successes add back ``increase_per_s`` calls/s per second,
never above the ceiling; a ``Retry-After`` pauses the whole account.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

from idbatch.logging import get_logger
from idbatch.providers import quota_of
from idbatch.settings import Settings

if TYPE_CHECKING:
    import redis

log = get_logger(__name__)

GRANTED, TOO_FAR, TOO_MANY = 1, 0, -1
MAX_LATE_RETRIES = 3  # slots given up in a row for waking late, before the job is deferred


@dataclass(frozen=True)
class Policy:
    """How one provider account may be called. ``ceiling`` 0 means no rate limit."""

    quota: float = 0.0
    headroom: float = 0.02
    max_in_flight: int = 0
    max_wait_s: float = 2.0
    lease_s: float = 60.0
    # Gentler than TCP's halving: the quota is known, so a refusal usually means a burst
    # or an account shared with someone else, not a collapsed path. Three cuts in three
    # seconds still bring 98 calls/s under 42.
    decrease: float = 0.75
    cooldown_s: float = 1.0
    recovery_s: float = 10.0  # from zero back to the ceiling, additively
    window_s: float = 1.0  # the provider counts calls per sliding window of this length

    @property
    def ceiling(self) -> float:
        return self.quota * (1.0 - self.headroom)

    @property
    def floor(self) -> float:
        return max(0.1, self.ceiling * 0.05)

    @property
    def increase_per_s(self) -> float:
        return self.ceiling / self.recovery_s

    @property
    def late_s(self) -> float:
        """How late a worker may wake for its slot: a quarter of the jitter the headroom absorbs.

        At ``quota * (1 - h)`` a window of ``quota`` calls spans ``h / (1 - h)`` s more
        than one second (20 ms at h = 2 %). A quarter is for the worker, whose excess
        lateness is cheap to absorb (the schedule moves back by the excess); the rest is
        for what nobody can measure: the network and the provider's own queueing.
        """
        return max(0.002, 0.25 * self.headroom / (1.0 - self.headroom))


@dataclass(frozen=True)
class Grant:
    status: int  # GRANTED, TOO_FAR or TOO_MANY
    wait_s: float  # GRANTED: sleep this long, then call; otherwise: when to try again
    rate: float  # the account's effective rate when asked
    start: float = 0.0  # the limiter clock's time of the granted slot (tests check the spacing)


class Limiter(Protocol):
    """Shared per-account limiter state. Keys are ``provider:account``."""

    def acquire(
        self, key: str, policy: Policy, lease_id: str, calls: int = 1, release: str | None = None
    ) -> Grant:
        """A slot worth ``calls`` provider calls: the next one is ``calls / rate`` later.

        ``release``: a lease of this key to release first, in the same step (the caller's
        previous call, ``AccountGate.holding_releases``).
        """

    def late(
        self, key: str, policy: Policy, start: float, delta_s: float, lease_id: str | None = None
    ) -> bool:
        """The slot at ``start`` is used ``delta_s`` late: shift the schedule, or refuse.

        Counts ``shifted_late`` or ``voided_late`` itself; on a refusal the slot is given
        up, so its lease ``lease_id`` (if any) is released in the same step.
        """

    def release(self, key: str, lease_id: str) -> None: ...

    def success(self, key: str, policy: Policy) -> float: ...

    def throttled(self, key: str, policy: Policy, retry_after_s: float | None) -> float: ...

    def note(self, key: str, event: str) -> None:
        """Count an event (a voided slot, a deferral) for operators and the benchmark."""


class RedisLimiter:
    def __init__(self, client: redis.Redis, prefix: str = "idbatch:rl") -> None:
        self._client = client
        self._prefix = prefix
        source = resources.files("workers").joinpath("ratelimit.lua").read_text(encoding="utf-8")
        self._script = client.register_script(source)

    def note(self, key: str, event: str) -> None:
        self._client.hincrby(f"{self._prefix}:{{{key}}}:events", event, 1)

    def events(self, key: str) -> dict[str, int]:
        raw = self._client.hgetall(f"{self._prefix}:{{{key}}}:events")
        return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}

    def _keys(self, key: str) -> list[str]:
        # One hash tag, so that every key lives on one node of a Redis Cluster.
        base = f"{self._prefix}:{{{key}}}"
        return [base, f"{base}:inflight", f"{base}:events"]

    def _run(self, key: str, *args: str | float) -> Any:
        return self._script(keys=self._keys(key), args=list(args))

    def acquire(
        self, key: str, policy: Policy, lease_id: str, calls: int = 1, release: str | None = None
    ) -> Grant:
        status, wait, rate, start = self._run(
            key,
            "acquire",
            policy.ceiling,
            policy.max_wait_s,
            policy.max_in_flight,
            policy.lease_s,
            lease_id,
            calls,
            release or "",
        )
        return Grant(int(status), float(wait), float(rate), float(start))

    def late(
        self, key: str, policy: Policy, start: float, delta_s: float, lease_id: str | None = None
    ) -> bool:
        return bool(
            self._run(key, "late", policy.ceiling, f"{start:.6f}", delta_s, policy.window_s, lease_id or "")
        )

    def release(self, key: str, lease_id: str) -> None:
        self._run(key, "release", 0, lease_id)

    def success(self, key: str, policy: Policy) -> float:
        return float(self._run(key, "success", policy.ceiling, policy.increase_per_s))

    def throttled(self, key: str, policy: Policy, retry_after_s: float | None) -> float:
        return float(
            self._run(
                key,
                "throttled",
                policy.ceiling,
                policy.decrease,
                policy.floor,
                policy.cooldown_s,
                retry_after_s or 0,
            )
        )


@dataclass
class _Account:
    tat: float = 0.0
    rate: float | None = None
    cut_at: float = float("-inf")
    paused_until: float = 0.0
    leases: dict[str, float] = field(default_factory=dict)


class LocalLimiter:
    """The Lua script's algorithm in-process, for the embedded mode and unit tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._accounts: dict[str, _Account] = {}
        self._lock = threading.Lock()
        self.events: Counter[tuple[str, str]] = Counter()

    def note(self, key: str, event: str) -> None:
        with self._lock:
            self.events[(key, event)] += 1

    def _get(self, key: str, policy: Policy) -> tuple[_Account, float]:
        acc = self._accounts.setdefault(key, _Account())
        rate = policy.ceiling if acc.rate is None else min(acc.rate, policy.ceiling)
        return acc, rate

    def acquire(
        self, key: str, policy: Policy, lease_id: str, calls: int = 1, release: str | None = None
    ) -> Grant:
        with self._lock:
            now = self._clock()
            acc, rate = self._get(key, policy)
            if release is not None:
                acc.leases.pop(release, None)
            start = max(now, acc.paused_until)
            if policy.ceiling > 0:
                start = max(start, acc.tat)
            wait = start - now
            if wait > policy.max_wait_s:
                return Grant(TOO_FAR, wait, rate, start)
            if policy.max_in_flight > 0:
                acc.leases = {k: exp for k, exp in acc.leases.items() if exp > now}
                if len(acc.leases) >= policy.max_in_flight:
                    return Grant(TOO_MANY, max(0.0, min(acc.leases.values()) - now), rate, start)
                acc.leases[lease_id] = start + policy.lease_s
            if policy.ceiling > 0:
                acc.tat = start + calls / rate
                acc.rate = rate
            return Grant(GRANTED, wait, rate, start)

    def late(
        self, key: str, policy: Policy, start: float, delta_s: float, lease_id: str | None = None
    ) -> bool:
        with self._lock:
            acc, rate = self._get(key, policy)
            if policy.ceiling <= 0 or acc.tat - start >= policy.window_s:
                if lease_id is not None:
                    acc.leases.pop(lease_id, None)
                self.events[(key, "voided_late")] += 1
                return False
            acc.tat = max(acc.tat + delta_s, start + delta_s + 1.0 / rate)
            self.events[(key, "shifted_late")] += 1
            return True

    def release(self, key: str, lease_id: str) -> None:
        with self._lock:
            acc = self._accounts.get(key)
            if acc is not None:
                acc.leases.pop(lease_id, None)

    def success(self, key: str, policy: Policy) -> float:
        with self._lock:
            acc, rate = self._get(key, policy)
            if 0 < rate < policy.ceiling:
                rate = min(policy.ceiling, rate + policy.increase_per_s / rate)
                acc.rate = rate
            return rate

    def throttled(self, key: str, policy: Policy, retry_after_s: float | None) -> float:
        with self._lock:
            now = self._clock()
            acc, rate = self._get(key, policy)
            if policy.ceiling > 0 and now - acc.cut_at >= policy.cooldown_s:
                rate = max(policy.floor, rate * policy.decrease)
                acc.rate, acc.cut_at = rate, now
            if retry_after_s:
                acc.paused_until = max(acc.paused_until, now + retry_after_s)
            return rate


def policy_for(settings: Settings, provider: str, account: str) -> Policy:
    return Policy(
        quota=quota_of(settings, provider, account),
        headroom=settings.rate_headroom,
        max_in_flight=settings.max_in_flight,
        max_wait_s=settings.ratelimit_max_wait_s,
        # A call lasts at most a few timeouts (connect + write + read); then its slot expires.
        lease_s=3 * settings.http_timeout_s + settings.ratelimit_max_wait_s,
    )


def build_limiter(settings: Settings) -> Limiter | None:
    backend = settings.ratelimit_backend
    url = settings.ratelimit_url or settings.broker_url
    if backend == "auto":
        backend = "redis" if url.startswith(("redis://", "rediss://", "unix://")) else "local"
    if backend == "off":
        return None
    if backend == "local":
        return LocalLimiter()
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)
    return RedisLimiter(client, settings.ratelimit_prefix)
