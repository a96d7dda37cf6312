"""Retry policy, declared once and by error class.

Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
Jitter"): sleep = uniform(0, min(cap, base * 2**(attempt-1))), never less than the
provider's ``Retry-After``. Full jitter spreads a thundering herd of retries after a
provider blip across the whole window instead of re-synchronizing it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from idbatch.providers import errors

# Never retried, whatever the attempt count (dramatiq's ``throws``).
NEVER_RETRIED = errors.NEVER_RETRIED


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_s: float = 1.0
    cap_s: float = 120.0
    rate_limited_floor_s: float = 1.0

    def delay(self, attempt: int, error: errors.ProviderError, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        r = rng or random
        ceiling = min(self.cap_s, self.base_s * 2 ** max(0, attempt - 1))
        delay = r.uniform(0, ceiling)
        if isinstance(error, errors.RateLimited):
            delay = max(delay, self.rate_limited_floor_s)
        if error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s)
        return delay

    def should_retry(self, attempt: int, error: errors.ProviderError) -> bool:
        if isinstance(error, NEVER_RETRIED):
            return False
        return isinstance(error, errors.Retryable) and attempt < self.max_attempts
