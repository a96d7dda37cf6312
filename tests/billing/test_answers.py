"""Every paid answer kept, every bill explained (issue 11): verdict rules, reuse, attempts."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from db import jobs as job_store
from db.models import Attempt, Batch, Job, JobWarning, Result
from db.reports import build_report
from db.session import session_scope
from idbatch.domain import AttemptOutcome, BatchKind, JobStatus, NormalizedResult, Verdict, WarningCode
from idbatch.providers import ConfigError, check_config
from producers.submit import submit_path
from tests.conftest import Env
from tests.durability.conftest import Stack
from workers import record
from workers.runtime import runtime
from workers.verdict import judge
from workers.verify import process_job

pytestmark = pytest.mark.integration

TODAY = dt.date(2026, 11, 22)


def test_an_answer_that_recognized_nothing_is_negative_never_passed() -> None:
    empty = NormalizedResult(verdict=Verdict.PASSED)  # a 200 with no name and no ID number
    verdict, warns = judge(empty, None, None, TODAY)
    assert verdict == Verdict.NEGATIVE
    assert [w.code for w in warns] == [WarningCode.NOTHING_RECOGNIZED]
    named = NormalizedResult(verdict=Verdict.PASSED, name="张三")
    assert WarningCode.NOTHING_RECOGNIZED not in [w.code for w in judge(named, None, None, TODAY)[1]]


def test_unknown_config_key_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"copy_warm.*valid keys:.*copy_warn"):
        check_config("acedata", {"copy_warm": True})
    check_config("tencent_ocr", {"copy_warn": True, "CropPortrait": True})  # ours and the vendor's


def test_submit_with_an_unknown_config_key_creates_no_batch(stack: Stack) -> None:
    with pytest.raises(ConfigError):
        submit_path(stack.manifest, settings=stack.settings, config={"copy_warm": True}, enqueue=False)
    with session_scope() as session:
        assert session.scalars(select(Batch)).all() == []


def test_reuse_is_judged_again_today_a_card_expired_since_is_negative(stack: Stack) -> None:
    first = stack.submit()
    stack.run_open(first)
    billed = stack.stats()["billable"]
    passed = [j for j in stack.jobs(first) if j.status == JobStatus.PASSED]
    assert passed
    with session_scope() as session:
        original = session.scalars(select(Result).where(Result.job_id == passed[0].id)).one()
        answered_at = original.answered_at
        # The card's validity ended yesterday: it has expired since it was paid for.
        original.valid_to = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        original.valid_long_term = False

    second = stack.submit()
    stack.run_open(second)
    assert stack.stats()["billable"] == billed  # nothing paid again
    again = next(j for j in stack.jobs(second) if j.external_ref == passed[0].external_ref)
    assert again.reused_from == passed[0].id
    assert again.status == JobStatus.NEGATIVE
    with session_scope() as session:
        copy = session.scalars(select(Result).where(Result.job_id == again.id)).one()
        codes = set(session.scalars(select(JobWarning.code).where(JobWarning.job_id == again.id)))
    assert WarningCode.EXPIRED in codes
    assert copy.answered_at == answered_at  # the copy keeps the time of the paid answer
    assert copy.provider_verdict == Verdict.PASSED and copy.verdict == Verdict.NEGATIVE


def test_an_answer_older_than_the_freshness_window_is_not_reused(stack: Stack) -> None:
    first = stack.submit()
    stack.run_open(first)
    billed = stack.stats()["billable"]
    with session_scope() as session:
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
        session.execute(update(Result).values(answered_at=old))
    second = stack.submit()
    stack.run_open(second)
    assert stack.stats()["billable"] == 2 * billed
    assert all(j.reused_from is None for j in stack.jobs(second))


def test_a_call_in_flight_when_its_worker_died_is_recorded_in_doubt(stack: Stack) -> None:
    batch = stack.submit()
    job_id = stack.jobs(batch)[0].id
    rt = runtime()
    with session_scope() as session:  # a worker claims the job, writes ahead, then dies mid-call
        dead = job_store.claim(session, job_id, "dead-worker", 300)
    assert dead is not None
    record.begin_calls(dead, ("front",), "default", dt.datetime.now(dt.UTC))
    with session_scope() as session:
        (row,) = session.scalars(select(Attempt).where(Attempt.job_id == job_id)).all()
        assert row.outcome == AttemptOutcome.IN_FLIGHT
        session.execute(update(Job).where(Job.id == job_id).values(lease_until=dt.datetime.now(dt.UTC)))

    process_job(job_id, rt)  # another worker takes the job over once the lease expired

    with session_scope() as session:
        rows = session.execute(
            select(Attempt.number, Attempt.outcome).where(Attempt.job_id == job_id).order_by(Attempt.number)
        ).all()
        report = build_report(session, batch)
    assert [tuple(r) for r in rows] == [(1, AttemptOutcome.IN_DOUBT), (2, AttemptOutcome.ANSWERED)]
    assert report.in_doubt_calls == 1


def test_no_attempt_row_stays_in_flight_after_a_batch(stack: Stack) -> None:
    stack.faults(rate_5xx=0.3)
    batch = stack.submit()
    stack.run_open(batch)
    with session_scope() as session:
        outcomes = set(session.scalars(select(Attempt.outcome)))
        report = build_report(session, batch)
    assert AttemptOutcome.IN_FLIGHT not in outcomes
    assert report.billable_calls == stack.stats()["billable"]


def test_finished_at_is_written_once_every_job_is_terminal(stack: Stack) -> None:
    batch = stack.submit()
    with session_scope() as session:
        assert session.get_one(Batch, batch).finished_at is None
    stack.run_open(batch)
    from workers.sweeper import sweep

    sweep(stack.settings, lambda ids: None, queue_depth=lambda: 0)
    with session_scope() as session:
        assert session.get_one(Batch, batch).finished_at is not None


def test_an_answer_found_stored_on_a_reclaim_stays_reusable(stack: Stack) -> None:
    """A finishing commit that looked lost: the job is claimed again and finds its answer.

    The claim clears the content key; finishing from the stored answer must give it
    back, or a later copy of the card would pay again.
    """
    first = stack.submit()
    stack.run_open(first)
    job = next(j for j in stack.jobs(first) if j.status == JobStatus.PASSED)
    with session_scope() as session:  # as if the worker never saw its commit land
        session.execute(update(Job).where(Job.id == job.id).values(status=JobStatus.QUEUED, finished_at=None))
    process_job(job.id, runtime())
    (again,) = [j for j in stack.jobs(first) if j.id == job.id]
    assert again.status == JobStatus.PASSED and again.content_key == job.content_key
    billed = stack.stats()["billable"]
    second = stack.submit()
    stack.run_open(second)
    assert stack.stats()["billable"] == billed  # every card reused, this one included


def test_a_call_sent_but_never_answered_is_recorded_in_doubt(stack: Stack, env: Env) -> None:
    """A read timeout: the provider may have answered (and billed) after we stopped waiting.

    Recorded ``in_doubt``, so the invoice stays explained (billable <= billed <= billable +
    in doubt); a refused connection (nothing sent) is a plain transport error.
    """
    import time

    env(http_timeout_s="0.3")
    stack.faults(latency_ms=1200)
    batch = stack.submit()
    job_id = stack.jobs(batch)[0].id
    process_job(job_id, runtime())
    time.sleep(1.5)  # let the simulator finish the request we gave up on
    with session_scope() as session:
        outcomes = session.scalars(select(Attempt.outcome).where(Attempt.job_id == job_id)).all()
        report = build_report(session, batch)
    assert outcomes == [AttemptOutcome.IN_DOUBT]
    assert report.in_doubt_calls == 1
    billed = stack.stats()["billable"]
    assert report.billable_calls <= billed <= report.billable_calls + report.in_doubt_calls


def test_nothing_sent_is_no_doubt() -> None:
    import httpx

    from idbatch.providers import common, errors
    from workers.retry import attempt_outcome

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    for handler, expected in ((refuse, AttemptOutcome.TRANSPORT_ERROR), (drop, AttemptOutcome.IN_DOUBT)):
        with (
            httpx.Client(transport=httpx.MockTransport(handler)) as client,
            pytest.raises(errors.Unavailable) as caught,
        ):
            common.send(client, "http://provider.test/", side="front", json={})
        assert attempt_outcome(caught.value) == expected


def test_a_write_ahead_row_becomes_the_answered_row_whatever_its_shape(stack: Stack) -> None:
    """db.attempts: one call over one write-ahead row is updated in place; other shapes as before."""
    from db.attempts import settle_in_flight
    from idbatch.providers.base import CallRecord

    batch = stack.submit()
    ids = [j.id for j in stack.jobs(batch)]
    started = dt.datetime.now(dt.UTC)
    call = CallRecord("front", 200, "0", "r", latency_ms=3.0, billable=True, handoff="url")
    cases = {
        ids[0]: (("front",), ("front",)),  # write-ahead front, answered front: in place
        ids[1]: ((), ("front",)),  # its write-ahead row is missing (rowcount 0): inserted
        ids[2]: (("front", "back"), ("front", "back")),  # two written ahead, one answered: one row
    }
    for job_id, (ahead, planned) in cases.items():
        with session_scope() as session:
            claimed = job_store.claim(session, job_id, "w", 300)
        assert claimed is not None
        record.begin_calls(claimed, ahead, "default", started)
        answered = record.attempt_rows(claimed, [call], started, "default", AttemptOutcome.ANSWERED)
        with session_scope() as session:
            settle_in_flight(session, job_id, claimed.seq, answered, planned)
    with session_scope() as session:
        for job_id in cases:
            rows = session.execute(
                select(Attempt.side, Attempt.outcome, Attempt.provider_request_id, Attempt.latency_ms).where(
                    Attempt.job_id == job_id
                )
            ).all()
            assert [tuple(r) for r in rows] == [("front", AttemptOutcome.ANSWERED, "r", 3.0)], job_id


def test_the_key_is_held_and_the_answer_to_reuse_found_in_one_statement(stack: Stack) -> None:
    """db.content_keys: reuse found, a running copy refused, a job taken over not held."""
    from sqlalchemy.exc import IntegrityError

    from db.content_keys import hold_and_find, in_one_statement
    from db.session import connection_scope

    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    first = stack.submit()
    stack.run_open(first)
    paid = stack.jobs(first)[0]
    with session_scope() as session:
        paid_result = session.scalars(select(Result.id).where(Result.job_id == paid.id)).one()
    second = stack.submit()
    a, b = (j.id for j in stack.jobs(second)[:2])
    with connection_scope() as conn:
        assert in_one_statement(conn)
        claim_a, claim_b = job_store.claim(conn, a, "w", 300), job_store.claim(conn, b, "w", 300)
    assert claim_a is not None and claim_b is not None
    with connection_scope() as conn:  # the same card as a paid job: its answer, and the key held
        assert hold_and_find(conn, claim_a, "w", str(paid.content_key), 300, since) == (True, paid_result)
    with connection_scope() as conn:
        assert hold_and_find(conn, claim_a, "w", "card-x", 300, since) == (True, None)
    with pytest.raises(IntegrityError), connection_scope() as conn:  # a running copy holds "card-x"
        hold_and_find(conn, claim_b, "w", "card-x", 300, since)
    with connection_scope() as conn:  # another worker's job now: not held, nothing found
        assert hold_and_find(conn, claim_b, "other:1", "card-y", 300, since) == (False, None)
    rerun = stack.submit(kind=BatchKind.RERUN)  # reuses only its own batch's answers
    with connection_scope() as conn:
        claim_r = job_store.claim(conn, stack.jobs(rerun)[0].id, "w", 300)
    assert claim_r is not None and claim_r.rerun
    with connection_scope() as conn:
        assert hold_and_find(conn, claim_r, "w", str(paid.content_key), 300, since) == (True, None)
