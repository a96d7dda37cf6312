"""Before calling: is this card's answer already stored, or already paid for by another job?

An earlier claim of this job may have stored the answer (a finishing commit that looked
lost); another job may have paid for the same card (same content key) within the
freshness window, whose answer is then reused and judged again for this job, today.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.exc import IntegrityError

from db import content_keys, jobs
from db.jobs import Claim, Tx
from db.models import Result, utcnow
from db.session import connection_scope
from idbatch.domain import JobStatus, NormalizedResult, Verdict, Warn, WarningCode, WarningSource
from idbatch.pii import AD_CLAIMED_ID, AD_CLAIMED_NAME, AD_ID_NUMBER, AD_NAME, vault
from idbatch.reruns import today
from idbatch.settings import get_settings
from workers.record import Outcome, status_of, stored_outcome, warning_rows
from workers.runtime import Runtime
from workers.verdict import judge


def prepare_call(
    claimed: Claim, key: str, rt: Runtime, begin: list[dict[str, object]] | None = None
) -> Outcome | None:
    """Decide whether a provider call is needed; None means "call now".

    ``begin``: the write-ahead ``in_flight`` attempt rows of the call, inserted in this
    same transaction when (and only when) the answer is "call now", so they are committed
    before the rate slot is taken without a transaction of their own (issue 17).

    Reuses an earlier paid answer for the same content key (unless the batch is a
    ``rerun``, whose purpose is to call again). One transaction, no savepoint: the
    content-key update is its first write, so a unique-index conflict (the same card
    being verified by another job right now) rolls back nothing else and is handled in
    a transaction of its own: the job waits for that answer instead of paying twice.
    """
    owner = rt.worker_id
    try:
        with connection_scope() as session:
            if claimed.seq > 1:  # an earlier claim may have stored the answer
                stored = stored_outcome(session, claimed, owner, key)
                if stored is not None:
                    return stored
            # One statement: hold the key (a running copy of the card raises IntegrityError),
            # renew the lease for the call, and find an answer to reuse (db.content_keys).
            held, source = _hold(session, claimed, key, rt)
            if not held:
                return Outcome(None)  # our lease expired and another worker took the job
            if source is not None:
                verdict, warns = _judge_again(session, claimed, source)
                origin = jobs.copy_answer(
                    session, source, claimed.job_id, verdict, warning_rows(claimed, warns)
                )
                status = status_of(verdict)
                jobs.release(
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
            if begin:
                jobs.begin_calls(session, begin)
    except IntegrityError:
        wait_s = max(1.0, rt.settings.sweep_interval_s)
        with connection_scope() as session:
            jobs.release(
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


def _hold(session: Tx, claimed: Claim, key: str, rt: Runtime) -> tuple[bool, Result | None]:
    """(the job is still ours and holds the key, an earlier paid answer to reuse or None)."""
    owner, lease_s, days = rt.worker_id, rt.settings.lease_s, rt.settings.reuse_max_age_days
    if days <= 0:  # reuse turned off: only hold the key
        return jobs.hold_content_key(session, claimed, owner, key, lease_s), None
    since = utcnow() - dt.timedelta(days=days)
    if not content_keys.in_one_statement(session):  # SQLite: look first, then hold, as before
        earlier = jobs.reusable_result(session, claimed, key, since)
        if earlier is not None:
            return True, earlier
        return jobs.hold_content_key(session, claimed, owner, key, lease_s), None
    held, result_id = content_keys.hold_and_find(session, claimed, owner, key, lease_s, since)
    if result_id is None:
        return held, None  # almost always: nothing to reuse
    return held, jobs.orm_session(session).get(Result, result_id)


def _judge_again(session: Tx, claimed: Claim, source: Result) -> tuple[Verdict, list[Warn]]:
    """The verdict rules, today, for this job's claims, over the provider's earlier answer."""
    v = vault()
    provider_warns = [
        Warn(WarningCode(w.code), WarningSource.PROVIDER, w.provider_code, w.detail)
        for w in jobs.provider_warnings(session, source.job_id)
    ]
    earlier = NormalizedResult(
        verdict=source.provider_verdict or source.verdict,
        name=v.decrypt(source.name_enc, AD_NAME),
        sex=source.sex,
        birth=source.birth,
        id_number=v.decrypt(source.id_number_enc, AD_ID_NUMBER),
        valid_to=source.valid_to,
        valid_long_term=source.valid_long_term,
        warnings=provider_warns,
    )
    claimed_name, claimed_id = (
        v.decrypt(claimed.claimed_name_enc, AD_CLAIMED_NAME),
        v.decrypt(claimed.claimed_id_enc, AD_CLAIMED_ID),
    )
    return judge(earlier, claimed_name, claimed_id, today(get_settings()))
