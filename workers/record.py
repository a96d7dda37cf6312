"""The short transactions around a provider call: before (may we call?) and after (record).

Each function here is one transaction through ``db.jobs``; ``workers.verify`` runs
them under ``workers.durable.durably`` so a database outage delays, never loses, them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from db import attempts as attempts_db
from db import jobs
from db.jobs import Claim, Tx
from db.models import utcnow
from db.session import connection_scope
from idbatch.domain import (
    AttemptOutcome,
    BatchKind,
    ErrorClass,
    JobStatus,
    NormalizedResult,
    Verdict,
    Warn,
)
from idbatch.idnumber import normalize
from idbatch.logging import get_logger
from idbatch.pii import (
    AD_ADDRESS,
    AD_CLAIMED_ID,
    AD_CLAIMED_NAME,
    AD_ID_NUMBER,
    AD_NAME,
    AD_RAW,
    AD_SIDE,
    scrub,
    strip_images,
    vault,
)
from idbatch.providers import errors
from idbatch.providers.base import CallRecord, ProviderAnswer
from idbatch.raw_answers import raw_for_storage
from idbatch.reruns import today
from idbatch.settings import get_settings
from workers.retry import RetryPolicy, attempt_outcome
from workers.runtime import Runtime
from workers.verdict import judge

log = get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What happened; ``retry_in_s`` asks the caller to schedule another attempt."""

    status: JobStatus | None
    retry_in_s: float | None = None


def status_of(verdict: Verdict) -> JobStatus:
    return JobStatus.PASSED if verdict == Verdict.PASSED else JobStatus.NEGATIVE


def stored_outcome(session: Tx, claimed: Claim, owner: str, key: str | None = None) -> Outcome | None:
    """If this job's answer is already stored (earlier worker, ambiguous commit), finish from it.

    ``key``: the content key, given back (the claim cleared it), so that this paid answer
    stays reusable by later copies of the card.
    """
    verdict = jobs.stored_verdict(session, claimed.job_id)
    if verdict is None:
        return None
    status = status_of(verdict)
    extra = {} if key is None else {"content_key": key}
    jobs.release(
        session,
        claimed,
        owner,
        status=status,
        finished_at=utcnow(),
        attempt_count=claimed.attempt - 1,
        **extra,
    )
    return Outcome(status)


def paid_sides(claimed: Claim) -> dict[str, dict[str, object]]:
    """Sides of this card an earlier attempt answered and paid for (none on a first claim)."""
    if claimed.seq <= 1:
        return {}
    with connection_scope() as session:
        stored = jobs.side_answers(session, claimed.job_id)
    v = vault()
    return {side: v.decrypt_json(token, AD_SIDE) for side, token in stored.items()}


def begin_calls(claimed: Claim, sides: tuple[str, ...], account: str, started: dt.datetime) -> None:
    """Write-ahead: one ``in_flight`` attempt row per call about to be made, committed first."""
    rows = begin_rows(claimed, sides, account, started)
    with connection_scope() as session:
        jobs.begin_calls(session, rows)


def begin_rows(
    claimed: Claim, sides: tuple[str, ...], account: str, started: dt.datetime
) -> list[dict[str, object]]:
    return [
        {
            "job_id": claimed.job_id,
            "number": claimed.seq,
            "side": side,
            "provider": claimed.provider,
            "account": account,
            "started_at": started,
            "outcome": AttemptOutcome.IN_FLIGHT,
            "billable": False,
        }
        for side in sides
    ]


def attempt_rows(
    claimed: Claim, calls: list[CallRecord], started: dt.datetime, account: str, outcome: AttemptOutcome
) -> list[dict[str, object]]:
    return [
        {
            "job_id": claimed.job_id,
            "number": claimed.seq,
            "side": c.side,
            "provider": claimed.provider,
            "account": account,
            "started_at": dt.datetime.fromtimestamp(c.sent_at, dt.UTC) if c.sent_at else started,
            "latency_ms": c.latency_ms,
            "http_status": c.http_status,
            "provider_code": c.provider_code,
            "provider_request_id": c.request_id,
            "outcome": outcome,
            "billable": c.billable,
            "handoff": c.handoff,
            "error": None,
        }
        for c in calls
    ]


def _result_row(claimed: Claim, result: NormalizedResult, verdict: Verdict) -> dict[str, object]:
    v = vault()
    return {
        "job_id": claimed.job_id,
        "provider": claimed.provider,
        "verdict": verdict,
        "name_enc": v.encrypt(result.name, AD_NAME),
        "sex": result.sex,
        "nation": result.nation,
        "birth": result.birth,
        "address_enc": v.encrypt(result.address, AD_ADDRESS),
        "id_number_enc": v.encrypt(result.id_number, AD_ID_NUMBER),
        "id_number_hash": v.lookup_hash(normalize(result.id_number) if result.id_number else None),
        "authority": result.authority,
        "valid_from": result.valid_from,
        "valid_to": result.valid_to,
        "valid_long_term": result.valid_long_term,
        "similarity": result.similarity,
        "quality": result.quality,
        "description": result.description,
        "raw_enc": v.encrypt_json(raw_for_storage(result.raw), AD_RAW),
        "provider_verdict": result.verdict,
        "answered_at": utcnow(),
    }


def warning_rows(claimed: Claim, warns: list[Warn]) -> list[dict[str, object]]:
    return [
        {
            "job_id": claimed.job_id,
            "code": w.code.value,
            "source": w.source.value,
            "provider_code": w.provider_code,
            "detail": scrub(w.detail) if w.detail else None,
        }
        for w in warns
    ]


def finish_answer(
    claimed: Claim,
    answer: ProviderAnswer,
    started: dt.datetime,
    account: str,
    rt: Runtime,
    *,
    check_stored: bool = False,
    planned: tuple[str, ...] = (),
) -> Outcome:
    """Record attempt(s), result, warnings and the final status in one transaction.

    ``check_stored`` looks for an answer already stored for this job first; only needed
    when the finishing transaction is being retried (its commit may have landed) or the
    job was claimed before. A result stored by another worker meanwhile (our lease had
    expired) surfaces as a unique violation: then only our attempts are recorded, so the
    paid call is still accounted for. ``planned``: the sides whose write-ahead rows were
    committed before the call (``db.attempts`` updates a single one in place).
    """
    v = vault()
    claimed_name, claimed_id = (
        v.decrypt(claimed.claimed_name_enc, AD_CLAIMED_NAME),
        v.decrypt(claimed.claimed_id_enc, AD_CLAIMED_ID),
    )
    verdict, warns = judge(answer.result, claimed_name, claimed_id, today(get_settings()))
    status = status_of(verdict)
    attempts = attempt_rows(claimed, answer.calls, started, account, AttemptOutcome.ANSWERED)
    try:
        with connection_scope() as session:
            if check_stored:
                stored = stored_outcome(session, claimed, rt.worker_id)
                if stored is not None:
                    return stored
            attempts_db.settle_in_flight(session, claimed.job_id, claimed.seq, attempts, planned)
            jobs.record_result(
                session, _result_row(claimed, answer.result, verdict), warning_rows(claimed, warns)
            )
            jobs.release(
                session,
                claimed,
                rt.worker_id,
                status=status,
                finished_at=utcnow(),
                error_class=None,
                last_error=None,
                next_attempt_at=None,
            )
    except IntegrityError:
        log.warning("result already recorded", job_id=claimed.job_id)
        with connection_scope() as session:
            jobs.clear_in_flight(session, claimed.job_id, claimed.seq)
            jobs.record_attempts(session, attempts)
        return Outcome(None)
    return Outcome(status)


def reason_at(claimed: Claim, reason: str) -> str:
    """Prefix a reason with the manifest row, as ingest reasons are."""
    if claimed.row_number is None or claimed.kind == BatchKind.EVENTS:
        return reason  # a standing batch's row numbers mean nothing to whoever uploaded the card
    line = f" (line {claimed.line_number})" if claimed.line_number else ""
    return f"row {claimed.row_number}{line}, column {reason}"


def finish_rejected(claimed: Claim, reason: str, rt: Runtime) -> Outcome:
    """Bad input found before calling: terminal, no attempt spent."""
    with connection_scope() as session:
        jobs.release(
            session,
            claimed,
            rt.worker_id,
            status=JobStatus.REJECTED,
            finished_at=utcnow(),
            error_class=ErrorClass.INPUT,
            last_error=scrub(reason_at(claimed, reason)),
            attempt_count=claimed.attempt - 1,
        )
    return Outcome(JobStatus.REJECTED)


def crashed(claimed: Claim, policy: RetryPolicy, rt: Runtime) -> Outcome:
    """Our processing failed after the claim (a bug, an undecodable input, the database).

    The attempt counts: a job that crashes every time must end, not retry forever (a
    decompression bomb did). Calls it had started may have been billed: in doubt.
    """
    retry = claimed.attempt < policy.max_attempts
    retry_s = max(1.0, rt.settings.sweep_interval_s)
    values: dict[str, object] = {
        "status": JobStatus.RETRY_WAIT if retry else JobStatus.FAILED,
        "error_class": ErrorClass.CRASHED,
        "last_error": "worker error; retrying"
        if retry
        else f"worker error (after {claimed.attempt} attempts)",
    }
    if retry:
        values["next_attempt_at"] = utcnow() + dt.timedelta(seconds=retry_s)
    else:
        values["finished_at"] = utcnow()
    with connection_scope() as session:
        jobs.mark_in_doubt(session, claimed.job_id, claimed.seq)
        jobs.release(session, claimed, rt.worker_id, **values)
    return Outcome(JobStatus(str(values["status"])), retry_s if retry else None)


def defer(claimed: Claim, delay_s: float, error_class: ErrorClass, reason: str, rt: Runtime) -> Outcome:
    """No call was made (circuit open, no token soon): put the job back, attempt unspent.

    Its write-ahead rows, if any, go too: nothing was sent.
    """
    with connection_scope() as session:
        jobs.clear_in_flight(session, claimed.job_id, claimed.seq)
        jobs.release(
            session,
            claimed,
            rt.worker_id,
            status=JobStatus.RETRY_WAIT,
            error_class=error_class,
            last_error=scrub(reason),
            attempt_count=claimed.attempt - 1,
            next_attempt_at=utcnow() + dt.timedelta(seconds=delay_s),
        )
    return Outcome(JobStatus.RETRY_WAIT, delay_s)


def finish_error(
    claimed: Claim,
    exc: errors.ProviderError,
    started: dt.datetime,
    latency_ms: float,
    account: str,
    policy: RetryPolicy,
    rt: Runtime,
    *,
    handoff: str | None = None,
) -> Outcome:
    """Record the failed call (and any sides answered before it); apply the retry decision."""
    message = scrub(exc.message)
    failed_call = CallRecord(
        side=exc.side,
        http_status=exc.http_status,
        provider_code=exc.provider_code,
        request_id=exc.request_id,
        latency_ms=latency_ms,
        billable=exc.billable,
        handoff=handoff or "none",  # "none": the image never left us
        # latency_ms runs from before the attempt's first call (for a failed BACK it covers
        # FRONT and the BACK's wait for its slot): the row keeps the attempt's start, not a
        # send time derived from it (nor one that moves as a database retry repeats this).
        sent_at=started.timestamp(),
    )
    attempts = attempt_rows(claimed, exc.calls, started, account, AttemptOutcome.ANSWERED)
    if not isinstance(exc, errors.Deferred):  # a deferred call was never sent: no row
        attempts += attempt_rows(claimed, [failed_call], started, account, attempt_outcome(exc))
        attempts[-1]["error"] = message
    v = vault()
    paid_sides = {side: v.encrypt_json(strip_images(reply), AD_SIDE) for side, reply in exc.answered.items()}
    decision = policy.decide(claimed.attempt, exc)
    values: dict[str, object] = {"status": decision.status, "error_class": decision.error_class}
    if decision.terminal:
        values["finished_at"] = utcnow()
        values["last_error"] = (
            message
            if decision.status != JobStatus.FAILED
            else (f"{message} (after {claimed.attempt} attempts)")
        )
    else:
        values["last_error"] = message
        values["next_attempt_at"] = utcnow() + dt.timedelta(seconds=decision.retry_in_s or 0.0)
    if not decision.counts_attempt:
        values["attempt_count"] = claimed.attempt - 1
    with connection_scope() as session:
        jobs.clear_in_flight(session, claimed.job_id, claimed.seq)
        jobs.record_attempts(session, attempts)
        jobs.store_side_answers(session, claimed.job_id, claimed.seq, paid_sides)
        jobs.release(session, claimed, rt.worker_id, **values)
    if decision.error_class is ErrorClass.ACCOUNT_BLOCKED:
        log.error(
            "provider account blocked", provider=claimed.provider, account=account, code=exc.provider_code
        )
    return Outcome(decision.status, decision.retry_in_s)
