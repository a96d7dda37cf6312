"""Processing one job: claim, call the provider, record everything in one transaction.

The provider call happens *outside* any database transaction (a slow provider must not
hold a connection or a SQLite write lock); the claim before it and the record after it
are each one short transaction. The lease taken by the claim is what makes a redelivered
message harmless: a second worker finds the job not claimable and acknowledges.

Idempotency has two keys. ``job.idempotency_key`` is computed at ingest from image
*references* (cheap: ingest must not read 20k images a second) and finds duplicate rows
and resubmitted manifests. It cannot prove two references hold the same picture, so
right before calling, the worker computes ``job.content_key`` from the image *bytes* +
provider + config + claimed identity (``_prepare_call``): if an earlier job with that key
has a paid answer, the job reuses it (``reused_from``) instead of paying again, unless
its batch is a ``rerun`` (``idbatch submit --force``), whose purpose is to call again.
A partial unique index lets only one ``running`` job hold a content key, so two copies
of one card never call at the same time: the second waits and then reuses the answer.

A paid answer is never thrown away: if the database is unreachable when the answer
is recorded, the finishing transaction is retried with capped backoff for as long as it
takes (``_durably``). The answer stays in memory meanwhile; the alternative, spooling it
to a local file, would need a replayer and PII-at-rest handling on every worker host,
while keeping the thread busy only delays this one job. A worker killed during that
wait loses the answer, and the re-delivery pays again: bounded by kills x concurrency.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    Select,
    Update,
    and_,
    bindparam,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from db.models import Attempt, Base, Batch, Job, JobWarning, Result, utcnow
from db.session import session_scope
from idbatch import images
from idbatch.domain import (
    AttemptOutcome,
    BatchKind,
    BatchState,
    JobStatus,
    NormalizedResult,
    Verdict,
    Warn,
    WarningCode,
    WarningSource,
)
from idbatch.idnumber import local_warnings, normalize
from idbatch.logging import get_logger
from idbatch.pii import scrub, strip_images, vault
from idbatch.providers import errors
from idbatch.providers.base import CallRecord, ImageSource, ProviderAnswer, VerifyRequest
from idbatch.storage.base import StorageUnavailable
from workers.retry import RetryPolicy
from workers.runtime import Runtime

log = get_logger(__name__)

CLAIMABLE = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RETRY_WAIT)
ACCOUNT_BLOCKED_PAUSE_S = 300.0
CLAIM_DB_TRIES = 5  # then give up: the job stays queued and the sweeper re-publishes it
DB_BACKOFF_CAP_S = 30.0
T = TypeVar("T")


@dataclass(frozen=True)
class Claim:
    job_id: int
    batch_id: int
    attempt: int
    front_image: str | None
    back_image: str | None
    provider: str
    config: dict[str, object]
    source: str
    rerun: bool = False  # the batch asks to call again, not to reuse earlier answers
    claimed_name_enc: bytes | None = None
    claimed_id_enc: bytes | None = None


@dataclass(frozen=True)
class _BatchFacts:
    provider: str
    config: dict[str, object]
    source: str
    rerun: bool


# Provider, config, source and kind never change after a batch is created (its *state*
# does, and claim() reads that fresh), so each worker process reads them once per batch.
# Keyed by database too: ids restart in every database a process may talk to (tests).
_batch_facts: dict[tuple[str, int], _BatchFacts] = {}


def _facts(session: Session, batch_id: int) -> _BatchFacts:
    key = (str(session.get_bind().engine.url), batch_id)
    facts = _batch_facts.get(key)
    if facts is None:
        row = session.execute(
            select(Batch.provider, Batch.provider_config, Batch.source, Batch.kind).where(
                Batch.id == batch_id
            )
        ).one()
        facts = _BatchFacts(
            row.provider, dict(row.provider_config or {}), row.source, row.kind == BatchKind.RERUN
        )
        if len(_batch_facts) > 10_000:
            _batch_facts.clear()
        _batch_facts[key] = facts
    return facts


@dataclass(frozen=True)
class Outcome:
    """What happened; ``retry_in_s`` asks the caller to schedule another attempt."""

    status: JobStatus | None
    retry_in_s: float | None = None


# --- statements built once -------------------------------------------------------------
# Building a Core statement and its cache key, then executing it, took ~150 µs; executing
# a prebuilt one with new parameters ~20 µs (an ad-hoc timing on in-memory SQLite). A job
# runs about seven of them, on a CPU-bound host.


@cache
def _claim_stmt() -> Update:
    now = bindparam("now", type_=Job.updated_at.type)
    claimable = or_(
        and_(Job.status.in_(CLAIMABLE), or_(Job.next_attempt_at.is_(None), Job.next_attempt_at <= now)),
        and_(Job.status == JobStatus.RUNNING, Job.lease_until < now),  # its worker died
    )
    batch_active = exists().where(Batch.id == Job.batch_id, Batch.state == BatchState.ACTIVE)
    return (
        update(Job)
        .where(Job.id == bindparam("job_id"), claimable, batch_active)
        .values(
            status=JobStatus.RUNNING,
            lease_owner=bindparam("owner"),
            lease_until=bindparam("lease_until"),
            attempt_count=Job.attempt_count + 1,
            updated_at=now,
            content_key=None,  # set again by _prepare_call right before the provider call
        )
        .returning(
            Job.batch_id,
            Job.attempt_count,
            Job.front_image,
            Job.back_image,
            Job.claimed_name_enc,
            Job.claimed_id_enc,
        )
    )


def _ours() -> tuple[ColumnElement[bool], ...]:
    """Our job, only while we still hold its lease."""
    return (
        Job.id == bindparam("job_id"),
        Job.status == JobStatus.RUNNING,
        Job.lease_owner == bindparam("owner"),
    )


@cache
def _release_stmt(columns: tuple[str, ...]) -> Update:
    values = {c: bindparam(f"v_{c}", type_=Job.__table__.c[c].type) for c in columns}
    return update(Job).where(*_ours()).values(lease_owner=None, lease_until=None, **values)


@cache
def _content_key_stmt() -> Update:
    return update(Job).where(*_ours()).values(content_key=bindparam("key"))


@cache
def _stored_verdict_stmt() -> Select[tuple[Verdict]]:
    return select(Result.verdict).where(Result.job_id == bindparam("job_id"))


@cache
def _reusable_stmt(same_batch: bool) -> Select[tuple[int]]:
    stmt = (
        select(Result.id)
        .join(Job, Job.id == Result.job_id)
        .where(Job.content_key == bindparam("key"), Job.id != bindparam("job_id"))
        .order_by(Result.id.desc())
        .limit(1)
    )
    return stmt.where(Job.batch_id == bindparam("batch_id")) if same_batch else stmt


@cache
def _insert_stmt(model: type[Base]) -> Insert:
    return insert(model)


def claim(session: Session, job_id: int, owner: str, lease_s: int) -> Claim | None:
    now = utcnow()
    params = {
        "now": now,
        "job_id": job_id,
        "owner": owner,
        "lease_until": now + dt.timedelta(seconds=lease_s),
    }
    row = _core(session).execute(_claim_stmt(), params).one_or_none()
    if row is None:
        return None
    facts = _facts(session, row.batch_id)
    return Claim(
        job_id,
        row.batch_id,
        row.attempt_count,
        row.front_image,
        row.back_image,
        facts.provider,
        facts.config,
        facts.source,
        rerun=facts.rerun,
        claimed_name_enc=row.claimed_name_enc,
        claimed_id_enc=row.claimed_id_enc,
    )


def image_source(rt: Runtime, ref: str, manifest_source: str, provider: str = "") -> ImageSource:
    """Turn a stored reference into something a provider can receive.

    Raises ImageRefError (the job is rejected) or StorageUnavailable (it is retried).
    """
    settings = rt.settings
    kind = images.classify_ref(ref)
    if kind == "http":
        images.check_url(ref, settings.allowed_private_hosts, resolve=True)
        return ImageSource(ref=ref, url=ref, load=None)
    if kind == "s3":
        from idbatch.storage.handoff import s3_image_source

        return s3_image_source(settings, ref, provider)
    if "://" in manifest_source:
        # Producers resolve a remote manifest's relative paths at ingest; a local path
        # left in such a batch must never make the worker open one of its own files.
        raise images.ImageRefError("local file path in a batch whose manifest is not a local file")
    base = Path(manifest_source).parent if manifest_source and "://" not in manifest_source else None
    path = images.resolve_local(ref, base)
    data = images.read_local(path, settings.image_max_bytes)
    images.inspect(data, settings.image_max_bytes)
    url = images.gateway_url(
        settings.gateway_url,
        path,
        settings.gateway_secret.get_secret_value().encode(),
        settings.gateway_url_ttl_s,
    )
    return ImageSource(ref=ref, url=url, load=lambda: data)


def process_job(
    job_id: int, rt: Runtime, *, policy: RetryPolicy | None = None, now: Callable[[], dt.datetime] = utcnow
) -> Outcome:
    settings = rt.settings
    policy = policy or RetryPolicy(settings.max_attempts, settings.backoff_base_s, settings.backoff_cap_s)

    def claim_tx() -> Claim | None:
        with session_scope() as session:
            return claim(session, job_id, rt.worker_id, settings.lease_s)

    claimed = _durably(claim_tx, "claim", tries=CLAIM_DB_TRIES)
    if claimed is None:
        return Outcome(None)  # terminal, paused, someone else's, or not yet due
    try:
        return _process_claimed(claimed, rt, policy, now)
    except Exception:
        # Whatever went wrong after the claim (a database error outside the retried
        # transactions, a bug), the job must not sit in ``running`` until its lease
        # expires: put it back, attempt unspent, and let the sweeper retry it soon.
        log.exception("job processing crashed; job put back", job_id=job_id)
        retry_s = max(1.0, settings.sweep_interval_s)
        _durably(lambda: _defer(claimed, retry_s, "crashed", "worker error; retrying", rt), "release")
        raise


def _process_claimed(
    claimed: Claim, rt: Runtime, policy: RetryPolicy, now: Callable[[], dt.datetime]
) -> Outcome:
    job_id = claimed.job_id

    column = "front_image"
    try:
        if not claimed.front_image:
            raise images.ImageRefError("missing")
        front = image_source(rt, claimed.front_image, claimed.source, claimed.provider)
        column = "back_image"
        back = (
            image_source(rt, claimed.back_image, claimed.source, claimed.provider)
            if claimed.back_image
            else None
        )
    except images.ImageRefError as exc:
        reason = f"{column}: {exc}"
        return _durably(lambda: _finish_rejected(claimed, reason, rt), "finish")
    except StorageUnavailable as exc:
        # The image store failed, not the provider (no call was made): retry like a 5xx.
        error = errors.Unavailable(f"{column}: {exc}", side=column.removesuffix("_image"))
        account = rt.provider(claimed.provider).account
        return _finish_error(claimed, error, now(), 0.0, account, policy, rt, handoff="none")

    key = content_key(claimed, front, back)
    prepared = _durably(lambda: _prepare_call(claimed, key, rt), "prepare")
    if prepared is not None:
        return prepared

    provider = rt.provider(claimed.provider)
    # Circuit breaker + the account's shared rate limit; may sleep briefly for its token.
    ticket = rt.gate().enter(claimed.provider, provider.account)
    if ticket.defer_s is not None:
        return _defer(claimed, ticket.defer_s, ticket.error_class or "throttled", ticket.reason, rt)
    request = VerifyRequest(job_id=job_id, front=front, back=back, config=claimed.config)
    handoff = "url" if front.url is not None else "inline"  # what the adapter can have sent
    started = now()
    t0 = time.perf_counter()
    try:
        with ticket:  # frees the in-flight slot; feeds the outcome to the limiter and circuit
            answer = provider.verify(request)
    except errors.ProviderError as exc:
        latency_ms = (time.perf_counter() - t0) * 1000
        failure = exc
        return _durably(
            lambda: _finish_error(
                claimed, failure, started, latency_ms, provider.account, policy, rt, handoff=handoff
            ),
            "finish",
        )
    tries = itertools.count()

    def finish() -> Outcome:
        retried = next(tries) > 0
        return _finish_answer(
            claimed, answer, started, provider.account, rt, check_stored=retried or claimed.attempt > 1
        )

    return _durably(finish, "finish")


def _durably(fn: Callable[[], T], what: str, *, tries: int | None = None) -> T:
    """Run a transaction, retrying while the database is unreachable (forever by default).

    Only connection-level errors are retried (server restarted, connection terminated,
    SQLite busy); anything else is a bug and propagates. Each try is a fresh session,
    so a half-done transaction is never reused.
    """
    delay = 0.2
    n = 0
    while True:
        try:
            return fn()
        except (OperationalError, InterfaceError) as exc:
            n += 1
            if tries is not None and n >= tries:
                raise
            log.warning("database unavailable, retrying", step=what, tries=n, error=str(exc.orig))
            time.sleep(delay)
            delay = min(delay * 2, DB_BACKOFF_CAP_S)


def _digest(source: ImageSource | None) -> str | None:
    if source is None:
        return None
    if source.load is not None:
        return hashlib.sha256(source.load()).hexdigest()
    return "ref:" + source.ref  # a URL the provider fetches itself: its content is unknown here


def content_key(claimed: Claim, front: ImageSource, back: ImageSource | None) -> str:
    """What is verified: image bytes, provider, its config, the claimed identity (keyed hash)."""
    name_enc, id_enc = claimed.claimed_name_enc, claimed.claimed_id_enc
    v = vault()
    material = json.dumps(
        [
            claimed.provider,
            claimed.config,
            _digest(front),
            _digest(back),
            v.decrypt(name_enc),
            v.decrypt(id_enc),
        ],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    # Keyed (HMAC) so the key of a known card cannot be recomputed without the PII key.
    return v.lookup_hash(material) or ""


def _stored_outcome(session: Session, claimed: Claim, owner: str) -> Outcome | None:
    """If this job's answer is already stored (earlier worker, ambiguous commit), finish from it."""
    verdict = _core(session).execute(_stored_verdict_stmt(), {"job_id": claimed.job_id}).scalar()
    if verdict is None:
        return None
    status = JobStatus.PASSED if verdict == Verdict.PASSED else JobStatus.NEGATIVE
    _release(session, claimed, owner, status=status, finished_at=utcnow(), attempt_count=claimed.attempt - 1)
    return Outcome(status)


def _prepare_call(claimed: Claim, key: str, rt: Runtime) -> Outcome | None:
    """Decide whether a provider call is needed; None means "call now".

    One transaction, no savepoint: the content-key update is its last statement, so a
    unique-index conflict (the same card being verified by another job right now) rolls
    back nothing else and is handled in a transaction of its own.
    """
    owner = rt.worker_id
    try:
        with session_scope() as session:
            if claimed.attempt > 1:  # an earlier attempt may have stored the answer
                stored = _stored_outcome(session, claimed, owner)
                if stored is not None:
                    return stored
            source = _reusable_source(session, claimed, key)
            if source is not None:
                return _reuse(session, claimed, key, source, owner)
            params = {"job_id": claimed.job_id, "owner": owner, "key": key}
            held = _core(session).execute(_content_key_stmt(), params).rowcount
            if not held:
                return Outcome(None)  # our lease expired and another worker took the job
    except IntegrityError:
        # Wait for the other job's answer instead of paying for a second one; not an attempt.
        wait_s = max(1.0, rt.settings.sweep_interval_s)
        with session_scope() as session:
            _release(
                session,
                claimed,
                owner,
                status=JobStatus.RETRY_WAIT,
                attempt_count=claimed.attempt - 1,
                next_attempt_at=utcnow() + dt.timedelta(seconds=wait_s),
                content_key=None,
            )
        return Outcome(JobStatus.RETRY_WAIT, wait_s)
    return None


def _reusable_source(session: Session, claimed: Claim, key: str) -> Result | None:
    """The latest paid answer for the same content key (a rerun reuses only its own batch's)."""
    params = {"key": key, "job_id": claimed.job_id, "batch_id": claimed.batch_id}
    result_id = _core(session).execute(_reusable_stmt(claimed.rerun), params).scalar()  # almost always None
    return None if result_id is None else session.get(Result, result_id)


def _reuse(session: Session, claimed: Claim, key: str, source: Result, owner: str) -> Outcome:
    """Copy an earlier paid answer (result + warnings) to this job; no provider call."""
    origin = session.scalar(select(Job.reused_from).where(Job.id == source.job_id)) or source.job_id
    skip = {"id", "job_id", "created_at"}
    copied = {c.key: getattr(source, c.key) for c in Result.__table__.columns if c.key not in skip}
    session.add(Result(job_id=claimed.job_id, **copied))
    warnings = session.scalars(select(JobWarning).where(JobWarning.job_id == source.job_id)).all()
    session.add_all(
        JobWarning(
            job_id=claimed.job_id,
            code=w.code,
            source=w.source,
            provider_code=w.provider_code,
            detail=w.detail,
        )
        for w in warnings
    )
    status = JobStatus.PASSED if source.verdict == Verdict.PASSED else JobStatus.NEGATIVE
    _release(
        session,
        claimed,
        owner,
        status=status,
        finished_at=utcnow(),
        attempt_count=claimed.attempt - 1,
        content_key=key,
        reused_from=origin,
        error_class=None,
        last_error=None,
        next_attempt_at=None,
    )
    return Outcome(status)


def _attempt_rows(
    claimed: Claim, calls: list[CallRecord], started: dt.datetime, account: str, outcome: AttemptOutcome
) -> list[dict[str, object]]:
    return [
        {
            "job_id": claimed.job_id,
            "number": claimed.attempt,
            "side": c.side,
            "provider": claimed.provider,
            "account": account,
            "started_at": started,
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


def _core(session: Session) -> Connection:
    """The session's connection, for Core statements on the hot path.

    ``Session.execute`` of an ORM-enabled UPDATE or INSERT goes through the ORM's bulk
    machinery (identity-map synchronization, unit of work) that these writes never need;
    the same statement on the session's own connection, in the same transaction, costs
    a fraction of the CPU. ``bench/quota.py`` is CPU-bound on a 2-core machine, so
    worker CPU per job is throughput.
    """
    return session.connection()


def _insert(conn: Connection, model: type[Base], rows: list[dict[str, object]]) -> None:
    """INSERT ``rows`` (executemany); nothing at all for none, never a row of defaults."""
    if rows:
        conn.execute(_insert_stmt(model), rows)


def _release(session: Session, claimed: Claim, owner: str, **values: object) -> bool:
    """Update our job only while we still hold its lease."""
    values.setdefault("updated_at", utcnow())
    params = {"job_id": claimed.job_id, "owner": owner, **{f"v_{k}": v for k, v in values.items()}}
    result = _core(session).execute(_release_stmt(tuple(sorted(values))), params)
    return bool(result.rowcount)


def _finish_answer(
    claimed: Claim,
    answer: ProviderAnswer,
    started: dt.datetime,
    account: str,
    rt: Runtime,
    *,
    check_stored: bool = False,
) -> Outcome:
    """Record attempt(s), result, warnings and the final status in one transaction.

    ``check_stored`` looks for an answer already stored for this job first; only needed
    when the finishing transaction is being retried (its commit may have landed) or the
    job was claimed before. A result stored by another worker meanwhile (our lease had
    expired) surfaces as a unique violation: then only our attempts are recorded, so the
    paid call is still accounted for.
    """
    result = answer.result
    warns = list(result.warnings)
    warns += local_warnings(result.id_number, result.sex, result.birth)
    if result.valid_to is not None and result.valid_to < dt.datetime.now(dt.UTC).date():
        warns.append(Warn(WarningCode.EXPIRED, WarningSource.LOCAL, detail=f"valid to {result.valid_to}"))
    v = vault()
    warns += claim_warnings(v.decrypt(claimed.claimed_name_enc), v.decrypt(claimed.claimed_id_enc), result)
    verdict = Verdict.PASSED if result.verdict == Verdict.PASSED and not warns else Verdict.NEGATIVE
    status = JobStatus.PASSED if verdict == Verdict.PASSED else JobStatus.NEGATIVE
    try:
        with session_scope() as session:
            if check_stored:
                stored = _stored_outcome(session, claimed, rt.worker_id)
                if stored is not None:
                    return stored
            conn = _core(session)
            answered = AttemptOutcome.ANSWERED
            _insert(conn, Attempt, _attempt_rows(claimed, answer.calls, started, account, answered))
            _insert(conn, Result, [_result_row(claimed, result, verdict)])
            _insert(
                conn,
                JobWarning,
                [
                    {
                        "job_id": claimed.job_id,
                        "code": w.code.value,
                        "source": w.source.value,
                        "provider_code": w.provider_code,
                        "detail": scrub(w.detail) if w.detail else None,
                    }
                    for w in warns
                ],
            )
            _release(
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
        with session_scope() as session:
            rows = _attempt_rows(claimed, answer.calls, started, account, AttemptOutcome.ANSWERED)
            _insert(_core(session), Attempt, rows)
        return Outcome(None)
    return Outcome(status)


def _result_row(claimed: Claim, result: NormalizedResult, verdict: Verdict) -> dict[str, object]:
    v = vault()
    return {
        "job_id": claimed.job_id,
        "provider": claimed.provider,
        "verdict": verdict,
        "name_enc": v.encrypt(result.name),
        "sex": result.sex,
        "nation": result.nation,
        "birth": result.birth,
        "address_enc": v.encrypt(result.address),
        "id_number_enc": v.encrypt(result.id_number),
        "id_number_hash": v.lookup_hash(normalize(result.id_number) if result.id_number else None),
        "authority": result.authority,
        "valid_from": result.valid_from,
        "valid_to": result.valid_to,
        "valid_long_term": result.valid_long_term,
        "similarity": result.similarity,
        "quality": result.quality,
        "description": result.description,
        "raw_enc": v.encrypt_json(strip_images(result.raw)),
    }


def _same_name(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        return "".join(unicodedata.normalize("NFKC", s).split())

    return norm(a) == norm(b)


def claim_warnings(claimed_name: str | None, claimed_id: str | None, result: NormalizedResult) -> list[Warn]:
    """Compare what the manifest claimed with what the provider read off the card."""
    warns: list[Warn] = []
    if claimed_name and result.name and not _same_name(claimed_name, result.name):
        warns.append(
            Warn(
                WarningCode.CLAIMED_NAME_MISMATCH,
                WarningSource.CLAIM,
                detail="claimed name differs from the recognized name",
            )
        )
    if claimed_id and result.id_number and normalize(claimed_id) != normalize(result.id_number):
        warns.append(
            Warn(
                WarningCode.CLAIMED_ID_MISMATCH,
                WarningSource.CLAIM,
                detail="claimed ID number differs from the recognized number",
            )
        )
    return warns


def _finish_rejected(claimed: Claim, reason: str, rt: Runtime) -> Outcome:
    with session_scope() as session:
        _release(
            session,
            claimed,
            rt.worker_id,
            status=JobStatus.REJECTED,
            finished_at=utcnow(),
            error_class="input",
            last_error=scrub(reason),
            attempt_count=claimed.attempt - 1,
        )
    return Outcome(JobStatus.REJECTED)


def _defer(claimed: Claim, delay_s: float, error_class: str, reason: str, rt: Runtime) -> Outcome:
    """No call was made (circuit open, or no token soon): put the job back, attempt unspent."""
    with session_scope() as session:
        _release(
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


def _outcome_of(exc: errors.ProviderError) -> AttemptOutcome:
    if isinstance(exc, errors.RateLimited):
        return AttemptOutcome.RATE_LIMITED
    if isinstance(exc, errors.AccountBlocked):
        return AttemptOutcome.BLOCKED
    if isinstance(exc, errors.ItemRejected):
        return AttemptOutcome.REJECTED
    if exc.http_status is None:
        return AttemptOutcome.TRANSPORT_ERROR
    return AttemptOutcome.RETRYABLE


def _finish_error(
    claimed: Claim,
    exc: errors.ProviderError,
    started: dt.datetime,
    latency_ms: float,
    account: str,
    policy: RetryPolicy,
    rt: Runtime,
    *,
    handoff: str = "url",
) -> Outcome:
    message = scrub(exc.message)
    failed_call = CallRecord(
        side=exc.side,
        http_status=exc.http_status,
        provider_code=exc.provider_code,
        request_id=exc.request_id,
        latency_ms=latency_ms,
        billable=exc.billable,
        handoff=handoff,
    )
    attempts = _attempt_rows(claimed, exc.calls, started, account, AttemptOutcome.ANSWERED)
    attempts += _attempt_rows(claimed, [failed_call], started, account, _outcome_of(exc))
    attempts[-1]["error"] = message
    retry_in: float | None = None
    with session_scope() as session:
        _insert(_core(session), Attempt, attempts)
        if isinstance(exc, errors.AccountBlocked):
            # Not the job's fault: keep it, do not count the attempt, try again later.
            retry_in = rt.settings.circuit_probe_s or ACCOUNT_BLOCKED_PAUSE_S  # the circuit opened
            status = JobStatus.RETRY_WAIT
            _release(
                session,
                claimed,
                rt.worker_id,
                status=status,
                error_class="account_blocked",
                last_error=message,
                attempt_count=claimed.attempt - 1,
                next_attempt_at=utcnow() + dt.timedelta(seconds=retry_in),
            )
            log.error(
                "provider account blocked", provider=claimed.provider, account=account, code=exc.provider_code
            )
        elif policy.should_retry(claimed.attempt, exc):
            retry_in = policy.delay(claimed.attempt, exc)
            status = JobStatus.RETRY_WAIT
            _release(
                session,
                claimed,
                rt.worker_id,
                status=status,
                error_class=type(exc).__name__,
                last_error=message,
                next_attempt_at=utcnow() + dt.timedelta(seconds=retry_in),
            )
        elif isinstance(exc, errors.ItemRejected):
            status = JobStatus.REJECTED
            _release(
                session,
                claimed,
                rt.worker_id,
                status=status,
                error_class="ItemRejected",
                last_error=message,
                finished_at=utcnow(),
            )
        else:
            status = JobStatus.FAILED
            _release(
                session,
                claimed,
                rt.worker_id,
                status=status,
                error_class=type(exc).__name__,
                last_error=f"{message} (after {claimed.attempt} attempts)",
                finished_at=utcnow(),
            )
    return Outcome(status, retry_in)
