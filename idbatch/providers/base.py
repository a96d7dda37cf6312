"""The provider seam: one Protocol, one module per vendor, chosen by configuration."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from idbatch.domain import NormalizedResult


@dataclass(frozen=True)
class ImageSource:
    """An image as the provider may receive it.

    ``url`` is a URL the provider can fetch (presigned S3, the image gateway, or a
    vetted public URL); ``load`` returns the bytes for inline base64. Adapters choose
    what their protocol accepts, and report the choice as ``handoff``.
    """

    ref: str
    url: str | None
    load: Callable[[], bytes] | None = None
    # The object's user metadata when the store gave it (S3): what an upload claims about
    # its card (``idbatch.upload_claims``). None for local files and plain URLs.
    metadata: dict[str, str] | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class VerifyRequest:
    job_id: int
    front: ImageSource
    back: ImageSource | None = None
    config: dict[str, Any] = field(default_factory=dict)
    # Sides already answered and paid for by an earlier attempt (side -> the reply the
    # adapter stored): a two-sided adapter calls only the sides missing here.
    answered: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Called by a two-sided adapter just before each call after the first one it sends
    # in this attempt: the worker takes that call's own rate slot (it may sleep for it,
    # or raise ``errors.Deferred``; the adapter passes the error on with ``answered``).
    pace: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    def paced(self, done: list[CallRecord]) -> None:
        """Before a call: its rate slot, when calls were already sent in this attempt."""
        if done and self.pace is not None:
            self.pace()


@dataclass
class CallRecord:
    """What one HTTP call produced, for the attempt row."""

    side: str
    http_status: int | None
    provider_code: str | None
    request_id: str | None
    latency_ms: float
    billable: bool
    handoff: str
    # When the request went out (epoch seconds): by default the moment the record is made
    # less its latency, as adapters make it on the answer. The attempt row's started_at, so
    # a row says when that call reached the provider, not when its job began (which, for
    # a BACK or a card that waited its turn for a rate slot, is seconds earlier).
    sent_at: float | None = None

    def __post_init__(self) -> None:
        if self.sent_at is None:
            self.sent_at = time.time() - self.latency_ms / 1000.0


def planned_sides(provider: Provider, request: VerifyRequest) -> tuple[str, ...]:
    """The calls ``provider.verify(request)`` will make at most, in order."""
    sides = ("front", "back") if provider.two_sided and request.back is not None else ("front",)
    return tuple(s for s in sides if s not in request.answered)


@dataclass
class ProviderAnswer:
    result: NormalizedResult
    calls: list[CallRecord]


class Provider(Protocol):
    """A verification/recognition provider.

    ``verify`` either returns an answer (positive or negative, always a business
    answer) or raises a ``ProviderError`` subclass. Implementations must be safe to
    call from many threads at once and must not sleep to retry: retrying is the
    worker's business, so a waiting job never holds a worker slot.
    """

    name: str
    account: str
    # True when a card with a back image costs two calls (front, back): the worker then
    # writes an attempt row for each side before calling.
    two_sided: bool

    def verify(self, request: VerifyRequest) -> ProviderAnswer: ...
