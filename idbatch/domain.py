"""The normalized vocabulary every provider maps into.

Reconciliation months later must not depend on which vendor answered, so statuses,
warning codes and result fields are ours, and each adapter translates into them.
The key split is between *processing failed* (we never got an answer) and
*verification negative* (the provider answered and the answer is "no").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class BatchKind(StrEnum):
    BACKFILL = "backfill"
    RERUN = "rerun"
    ADHOC = "adhoc"  # one card: POST /v1/verifications, the Celery entry
    EVENTS = "events"
    API = "api"  # many cards in one request: POST /v1/batches (inline, NDJSON, manifest ref)


class BatchState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class JobStatus(StrEnum):
    PENDING = "pending"  # recorded, no message sent yet
    QUEUED = "queued"  # a message is (believed to be) on the broker
    RUNNING = "running"  # a worker holds the lease
    RETRY_WAIT = "retry_wait"  # waiting for next_attempt_at
    PASSED = "passed"  # provider answered and everything matched
    NEGATIVE = "negative"  # provider answered: mismatch, low similarity, warnings
    REJECTED = "rejected"  # bad input: never sent, or refused by the provider as malformed
    FAILED = "failed"  # processing failed: no answer after all attempts
    CANCELLED = "cancelled"


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.PASSED, JobStatus.NEGATIVE, JobStatus.REJECTED, JobStatus.FAILED, JobStatus.CANCELLED}
)


class Verdict(StrEnum):
    PASSED = "passed"
    NEGATIVE = "negative"


class ErrorClass(StrEnum):
    """Why a job is not (yet) done, as stored in ``job.error_class``; decided in workers.retry."""

    INPUT = "input"  # bad input: rejected at ingest or before the call
    CRASHED = "crashed"  # our processing failed after the claim: put back, retried
    THROTTLED = "throttled"  # no rate token soon enough: deferred, no call made
    ACCOUNT_BLOCKED = "account_blocked"  # the account's circuit is open: parked, not counted
    RATE_LIMITED = "RateLimited"  # the provider said "too many requests"
    UNAVAILABLE = "Unavailable"  # 5xx, timeouts, connection errors
    ITEM_REJECTED = "ItemRejected"  # the provider refused this item
    PROVIDER_ERROR = "ProviderError"  # any other provider failure
    BUDGET = "budget"  # a rerun's budget was spent before this card: left pending, never sent


class AttemptOutcome(StrEnum):
    ANSWERED = "answered"  # provider gave a business answer (positive or negative)
    RETRYABLE = "retryable"  # transient failure, will retry
    RATE_LIMITED = "rate_limited"
    REJECTED = "rejected"  # item refused by the provider
    BLOCKED = "blocked"  # account-level refusal
    TRANSPORT_ERROR = "transport_error"
    # Written *before* the call and completed after it: a row still ``in_flight`` when its
    # lease is gone belonged to a worker that died mid-call, and becomes ``in_doubt``
    # (possibly billed). Reconciliation counts answered + in_doubt against the invoice.
    IN_FLIGHT = "in_flight"
    IN_DOUBT = "in_doubt"


class WarningCode(StrEnum):
    """Normalized warnings. Provider codes are kept beside them on every row."""

    # image / document authenticity (provider)
    PHOTOCOPY = "photocopy"
    BW_COPY = "bw_copy"
    SCREEN_RESHOOT = "screen_reshoot"
    PHOTOSHOPPED = "photoshopped"
    TEMPORARY_ID = "temporary_id"
    BORDER_INCOMPLETE = "border_incomplete"
    BORDER_OCCLUDED = "border_occluded"
    GLARE = "glare"
    LOW_QUALITY = "low_quality"
    INVALID_VALIDITY = "invalid_validity"
    ELECTRONIC_ID = "electronic_id"
    WATERMARK = "watermark"
    REVERSED_SIDE = "reversed_side"
    NOT_ID_CARD = "not_id_card"
    OTHER_CARD_TYPE = "other_card_type"
    OVER_EXPOSURE = "over_exposure"
    OVER_DARK = "over_dark"
    MULTI_CARD = "multi_card"
    # identity verification (provider)
    NAME_ID_MISMATCH = "name_id_mismatch"
    ID_NOT_IN_REGISTRY = "id_not_in_registry"
    NO_REGISTRY_PHOTO = "no_registry_photo"
    LOW_SIMILARITY = "low_similarity"
    OCR_FAILED = "ocr_failed"
    NOTHING_RECOGNIZED = "nothing_recognized"  # an answer with neither name nor ID number
    # local checks on the recognized ID number (python-stdnum)
    ID_FORMAT_INVALID = "id_format_invalid"
    ID_CHECKSUM_INVALID = "id_checksum_invalid"
    ID_BIRTHDATE_INVALID = "id_birthdate_invalid"
    ID_REGION_UNKNOWN = "id_region_unknown"
    SEX_MISMATCH_ID = "sex_mismatch_id"
    BIRTH_MISMATCH_ID = "birth_mismatch_id"
    EXPIRED = "expired"
    # claims in the manifest vs recognized fields
    CLAIMED_NAME_MISMATCH = "claimed_name_mismatch"
    CLAIMED_ID_MISMATCH = "claimed_id_mismatch"


class WarningSource(StrEnum):
    PROVIDER = "provider"
    LOCAL = "local"
    CLAIM = "claim"


@dataclass(frozen=True)
class Warn:
    code: WarningCode
    source: WarningSource
    provider_code: str | None = None
    detail: str | None = None


@dataclass
class NormalizedResult:
    """What every provider's answer becomes. PII fields are encrypted when stored."""

    verdict: Verdict
    name: str | None = None
    sex: str | None = None  # "男" / "女" as printed on the card
    nation: str | None = None
    birth: dt.date | None = None
    address: str | None = None
    id_number: str | None = None
    authority: str | None = None
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None  # None with valid_long_term for 长期
    valid_long_term: bool = False
    similarity: float | None = None
    quality: float | None = None
    description: str | None = None
    warnings: list[Warn] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
