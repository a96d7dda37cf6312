"""One exception tree for every provider; the retry policy reads only these classes.

    ProviderError
    ├── Retryable               transient: try again later (backoff with jitter)
    │   ├── RateLimited         over quota: slow the whole account down, honour Retry-After
    │   ├── Unavailable         5xx, gateway timeouts, connection errors, read timeouts
    │   └── Deferred            not sent: our own limiter had no slot soon for it
    ├── ItemRejected            this input can never succeed: terminal for the job only
    └── AccountBlocked          auth failure, arrears, quota exhausted: stop the account,
                                keep the jobs, tell the operator

Each adapter maps its vendor's codes into these in a single table at the top of its
module, like httpx's ``_exceptions.py``; nothing else interprets vendor codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from idbatch.providers.base import CallRecord


class ProviderError(Exception):
    """Base class. Carries what the attempt row must record."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        provider_code: str | None = None,
        request_id: str | None = None,
        retry_after_s: float | None = None,
        billable: bool = False,
        side: str = "front",
        calls: list[CallRecord] | None = None,
        handoff: str | None = None,
        maybe_billed: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.provider_code = provider_code
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        self.billable = billable
        self.side = side
        # Calls that completed before this error (a billed FRONT before a failed BACK):
        # recorded as attempts so that billing reconciles even when the job did not.
        self.calls = calls or []
        # How the failed call's image was handed over ("url"/"inline"); None: not sent.
        self.handoff = handoff
        # The request reached the provider and no answer came back (a read timeout, a
        # connection dropped mid-answer): it may have been billed. Recorded as in doubt,
        # so reconciliation can explain such a call on the invoice.
        self.maybe_billed = maybe_billed
        # Sides answered (and paid for) in this attempt before the failure, as the adapter
        # needs them back to finish the card without calling those sides again.
        self.answered: dict[str, dict[str, Any]] = {}


class Retryable(ProviderError):
    """Worth another attempt after a backoff."""


class RateLimited(Retryable):
    """The account is over its rate; the limiter should back off for every worker."""


class Unavailable(Retryable):
    """Server-side failure or transport error; the request may not have been processed."""


class Deferred(Retryable):
    """Not sent: the account's shared limiter has no rate slot soon for this call.

    Raised by ``VerifyRequest.pace`` before a two-sided card's second call. The sides
    answered before it are kept (``answered``), the job waits ``retry_after_s`` and the
    attempt is given back: neither the card nor the provider failed.
    """


class ItemRejected(ProviderError):
    """The provider refused this item (bad image, bad parameter); retrying cannot help."""


class AccountBlocked(ProviderError):
    """Nothing for this account will succeed until an operator acts."""


# The visible list of what is never retried (dramatiq's ``throws``).
NEVER_RETRIED: tuple[type[ProviderError], ...] = (ItemRejected, AccountBlocked)
