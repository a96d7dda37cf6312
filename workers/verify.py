"""Processing one job: claim → prepare → call → record.

The provider call happens *outside* any database transaction (a slow provider must not
hold a connection or a SQLite write lock); the claim before it and the record after it
are each one short transaction (``workers.record`` over ``db.jobs``). The lease taken by
the claim is what makes a redelivered message harmless: a second worker finds the job
not claimable and acknowledges.

Before calling, the content key (``workers.content``) finds an earlier paid answer for
the same card, which is reused instead of paying again; a partial unique index lets
only one ``running`` job hold a content key, so two copies of one card never call at
the same time. Every transaction runs under ``durably``: a paid answer is never dropped
because the database was briefly away.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

from db import jobs
from db.events import upload_versions
from db.jobs import Claim
from db.models import utcnow
from db.session import connection_scope
from idbatch import images, metrics
from idbatch.domain import BatchKind, ErrorClass
from idbatch.logging import get_logger
from idbatch.providers import errors
from idbatch.providers.base import VerifyRequest, planned_sides
from idbatch.storage.base import StorageUnavailable
from workers import prepare, record, upload_claims
from workers.content import content_key
from workers.durable import durably
from workers.record import Outcome
from workers.retry import RetryPolicy
from workers.runtime import Runtime
from workers.sources import image_source

log = get_logger(__name__)

CLAIM_DB_TRIES = 5  # then give up: the job stays queued and the sweeper re-publishes it

__all__ = ["Claim", "Outcome", "process_job"]


class _Call(NamedTuple):
    """The failed call as the metrics see it (its CallRecord is built in ``record``)."""

    billable: bool
    latency_ms: float


def default_policy(rt: Runtime) -> RetryPolicy:
    s = rt.settings
    return RetryPolicy(
        s.max_attempts, s.backoff_base_s, s.backoff_cap_s, blocked_pause_s=s.circuit_probe_s or 300.0
    )


def process_job(
    job_id: int,
    rt: Runtime,
    *,
    policy: RetryPolicy | None = None,
    now: Callable[[], dt.datetime] = utcnow,
    claim: Claim | None = None,
) -> Outcome:
    """Claim (unless ``claim`` is this job's, taken with its group by ``db.claims``), call, record."""
    settings = rt.settings

    def claim_tx() -> Claim | None:
        with connection_scope() as conn:
            return jobs.claim(conn, job_id, rt.worker_id, settings.lease_s)

    claimed = claim if claim is not None else durably(claim_tx, "claim", tries=CLAIM_DB_TRIES)
    if claimed is None:
        return Outcome(None)  # terminal, paused, someone else's, or not yet due
    policy = policy or default_policy(rt)
    try:
        outcome = _process_claimed(claimed, rt, policy, now)
    except Exception:
        # Whatever went wrong after the claim (a database error outside the retried
        # transactions, a bug), the job must not sit in ``running`` until its lease
        # expires: put it back (the attempt counts) and let the sweeper retry it soon.
        log.exception("job processing crashed; job put back", job_id=job_id)
        crashed = durably(lambda: record.crashed(claimed, policy, rt), "release")
        if crashed.status is not None:
            metrics.job_outcome(crashed.status.value, claimed.kind)
        raise
    if outcome.status is not None:
        metrics.job_outcome(outcome.status.value, claimed.kind)
    return outcome


def _versions(claimed: Claim) -> dict[str, str]:
    """The object versions an upload-event card was recorded with (none for other jobs)."""
    if claimed.kind != BatchKind.EVENTS:
        return {}

    def read() -> dict[str, str]:
        with connection_scope() as conn:
            return upload_versions(conn, claimed.job_id)

    return durably(read, "versions")


def _process_claimed(
    claimed: Claim, rt: Runtime, policy: RetryPolicy, now: Callable[[], dt.datetime]
) -> Outcome:
    # Only the accounts the batch may use (its tenant's own, if it has any): a blocked one
    # falls over to another of these, never to an account of someone else.
    adapters = rt.allowed(claimed.provider, claimed.accounts)
    if not adapters:
        reason = f"none of the batch's accounts is configured: {', '.join(claimed.accounts)}"
        return record.defer(claimed, policy.blocked_pause_s, ErrorClass.ACCOUNT_BLOCKED, reason, rt)
    # prepare: the images, then "is this card already paid for?"
    column = "front_image"
    try:
        if not claimed.front_image:
            raise images.ImageRefError("missing")
        versions = _versions(claimed)
        front = image_source(
            rt, claimed.front_image, claimed.source, claimed.provider, versions.get(claimed.front_image)
        )
        column = "back_image"
        back = (
            image_source(
                rt, claimed.back_image, claimed.source, claimed.provider, versions.get(claimed.back_image)
            )
            if claimed.back_image
            else None
        )
        if upload_claims.wanted(claimed, front):  # an upload's claims, from the HEAD just made
            column = "claims"
            claimed = upload_claims.adopt(claimed, front, back, rt)
    except images.ImageRefError as exc:
        reason = f"{column}: {exc}"
        return durably(lambda: record.finish_rejected(claimed, reason, rt), "finish")
    except upload_claims.Unusable as exc:
        unusable = str(exc)
        return durably(lambda: record.finish_rejected(claimed, unusable, rt), "finish")
    except StorageUnavailable as exc:
        # The image store failed, not the provider (no call was made): retry like a 5xx.
        side = "back" if column == "back_image" else "front"  # a sidecar is the card's, read with its front
        error = errors.Unavailable(f"{column}: {exc}", side=side)
        account = next(iter(adapters))
        return record.finish_error(claimed, error, now(), 0.0, account, policy, rt, handoff=None)

    key = content_key(claimed, front, back)
    # sides paid for by an earlier attempt (read before taking a rate slot: a slot is timed)
    answered = durably(lambda: record.paid_sides(claimed), "sides") if back is not None else {}

    request = VerifyRequest(
        job_id=claimed.job_id, front=front, back=back, config=claimed.config, answered=answered
    )
    started = now()
    # Write-ahead: with one account, the in-flight rows are committed *before* the rate
    # slot is taken, so nothing but the send stands between a timed grant and the call
    # (a transaction there made calls late and bunched them at the provider). They ride
    # in the content-key transaction (inserted only if the answer is "call now"). With
    # several accounts the account is known only after the gate chose it.
    single = next(iter(adapters.values())) if len(adapters) == 1 else None
    begin = None
    if single is not None:
        sides = planned_sides(single, request)
        begin = record.begin_rows(claimed, sides, single.account, started)
    prepared = durably(lambda: prepare.prepare_call(claimed, key, rt, begin), "prepare")
    if prepared is not None:
        return prepared

    # call: on one of the provider's accounts, behind its circuit breaker and shared rate
    # limit (may sleep briefly for the token). The slot is the first call's; a two-sided
    # card's BACK takes its own just before it is sent (``AccountGate.next_call``).
    gate = rt.gate()
    ticket = gate.enter_any(claimed.provider, list(adapters))
    if ticket.defer_s is not None:
        reason_class = ErrorClass(ticket.error_class or ErrorClass.THROTTLED)
        metrics.deferred(reason_class.value)
        return record.defer(claimed, ticket.defer_s, reason_class, ticket.reason, rt)
    request = replace(request, pace=lambda: gate.next_call(ticket))
    provider = adapters[ticket.account]
    if single is None:
        # Another account can take the job at once if this one turns out to be blocked.
        policy = replace(policy, blocked_pause_s=1.0)
        sides = planned_sides(provider, request)
        try:
            durably(lambda: record.begin_calls(claimed, sides, provider.account, started), "begin")
        except BaseException:
            ticket.__exit__(None, None, None)  # no call was made: give the slot back
            raise
    t0 = time.perf_counter()
    try:
        # the ticket frees the in-flight slot; feeds the outcome to the limiter and circuit
        with ticket, metrics.in_flight(claimed.provider).track_inprogress():
            answer = provider.verify(request)
    except errors.ProviderError as exc:
        latency_ms = (time.perf_counter() - t0) * 1000
        failure = exc
        if isinstance(exc, errors.Deferred):  # BACK had no slot soon: FRONT is kept, BACK unsent
            metrics.deferred(ErrorClass.THROTTLED.value)
            metrics.observe_calls(claimed.provider, provider.account, exc.calls)
        else:
            code = exc.provider_code or (str(exc.http_status) if exc.http_status else type(exc).__name__)
            metrics.observe_calls(
                claimed.provider,
                provider.account,
                [*exc.calls, _Call(exc.billable, latency_ms)],
                failed_code=code,
            )
        return durably(
            lambda: record.finish_error(
                claimed, failure, started, latency_ms, provider.account, policy, rt, handoff=failure.handoff
            ),
            "finish",
        )

    # record: the answer, its verdict and warnings, in one transaction
    metrics.observe_calls(claimed.provider, provider.account, answer.calls)
    tries = itertools.count()

    def finish() -> Outcome:
        retried = next(tries) > 0
        return record.finish_answer(
            claimed,
            answer,
            started,
            provider.account,
            rt,
            check_stored=retried or claimed.seq > 1,
            planned=sides,
        )

    return durably(finish, "finish")
