"""What a failed provider call means for its job: decided here, once, by error class.

Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
Jitter"): sleep = uniform(0, min(cap, base * 2**(attempt-1))), never less than the
provider's ``Retry-After``. Full jitter spreads a thundering herd of retries after a
provider blip across the whole window instead of re-synchronizing it.

    AccountBlocked  -> retry_wait, attempt not counted (not the job's fault; circuit opens)
    Retryable       -> retry_wait with backoff while attempts remain, then failed
    ItemRejected    -> rejected (terminal: this input can never succeed)
    anything else   -> failed
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from idbatch.domain import AttemptOutcome, ErrorClass, JobStatus
from idbatch.providers import errors

# Never retried, whatever the attempt count (dramatiq's ``throws``).
NEVER_RETRIED = errors.NEVER_RETRIED

_CLASSES: tuple[tuple[type[errors.ProviderError], ErrorClass], ...] = (
    (errors.Deferred, ErrorClass.THROTTLED),
    (errors.AccountBlocked, ErrorClass.ACCOUNT_BLOCKED),
    (errors.ItemRejected, ErrorClass.ITEM_REJECTED),
    (errors.RateLimited, ErrorClass.RATE_LIMITED),
    (errors.Retryable, ErrorClass.UNAVAILABLE),
)


def error_class(exc: errors.ProviderError) -> ErrorClass:
    for cls, value in _CLASSES:
        if isinstance(exc, cls):
            return value
    return ErrorClass.PROVIDER_ERROR


def attempt_outcome(exc: errors.ProviderError) -> AttemptOutcome:
    """How the failed call is recorded on its attempt row."""
    if exc.maybe_billed:  # sent, never answered: possibly billed (reports count it in doubt)
        return AttemptOutcome.IN_DOUBT
    if isinstance(exc, errors.RateLimited):
        return AttemptOutcome.RATE_LIMITED
    if isinstance(exc, errors.AccountBlocked):
        return AttemptOutcome.BLOCKED
    if isinstance(exc, errors.ItemRejected):
        return AttemptOutcome.REJECTED
    if exc.http_status is None:
        return AttemptOutcome.TRANSPORT_ERROR
    return AttemptOutcome.RETRYABLE


@dataclass(frozen=True)
class Decision:
    status: JobStatus
    error_class: ErrorClass
    retry_in_s: float | None = None  # set for retry_wait
    counts_attempt: bool = True  # False: the attempt is given back (not the job's fault)

    @property
    def terminal(self) -> bool:
        return self.retry_in_s is None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_s: float = 1.0
    cap_s: float = 120.0
    rate_limited_floor_s: float = 1.0
    blocked_pause_s: float = 300.0  # how long jobs of a blocked account wait (the circuit's probe)

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

    def decide(self, attempt: int, error: errors.ProviderError) -> Decision:
        """The one place that turns a failed call into the job's next state."""
        cls = error_class(error)
        if cls is ErrorClass.ACCOUNT_BLOCKED:
            return Decision(JobStatus.RETRY_WAIT, cls, self.blocked_pause_s, counts_attempt=False)
        if isinstance(error, errors.Deferred):  # our limiter's wait, not a failure: as record.defer
            return Decision(JobStatus.RETRY_WAIT, cls, error.retry_after_s or 0.05, counts_attempt=False)
        if self.should_retry(attempt, error):
            return Decision(JobStatus.RETRY_WAIT, cls, self.delay(attempt, error))
        if cls is ErrorClass.ITEM_REJECTED:
            return Decision(JobStatus.REJECTED, cls)
        return Decision(JobStatus.FAILED, cls)
