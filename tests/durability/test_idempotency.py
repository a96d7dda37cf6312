"""Idempotency: duplicates, redelivery and resubmits never pay twice; --force does."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from db.jobs import claim
from db.models import Job, Result
from db.reports import build_report
from db.session import session_scope
from idbatch.domain import BatchKind, JobStatus
from tests.durability.conftest import Stack
from workers.content import content_key
from workers.runtime import runtime
from workers.sources import image_source
from workers.verify import process_job

pytestmark = pytest.mark.integration


def _with_duplicates(manifest: Path, copies: int) -> Path:
    lines = manifest.read_text(encoding="utf-8").splitlines()
    header, first = lines[0], lines[1]
    out = manifest.with_name("dups.csv")
    dup_rows = [first.replace(first.split(",")[0], f"DUP-{i}", 1) for i in range(copies)]
    out.write_text("\n".join([header, *lines[1:], *dup_rows]) + "\n", encoding="utf-8")
    return out


def test_duplicate_rows_make_one_billable_call(stack: Stack) -> None:
    batch = stack.submit(_with_duplicates(stack.manifest, 2))
    stack.run_open(batch)

    assert stack.stats()["billable"] == 6
    assert stack.stats()["duplicate_billable"] == 0
    jobs = stack.jobs(batch)
    assert len(jobs) == 8
    originals = {j.content_key: j for j in jobs if j.reused_from is None}
    reused = [j for j in jobs if j.reused_from is not None]
    assert len(reused) == 2
    for job in reused:
        assert job.status == originals[job.content_key].status
        assert job.reused_from == originals[job.content_key].id
    with session_scope() as session:
        report = build_report(session, batch)
    assert report.done
    assert report.reused == 2
    assert report.billable_calls == 6


def test_resubmitted_manifest_makes_no_billable_call(stack: Stack) -> None:
    first = stack.submit()
    stack.run_open(first)
    billed = stack.stats()["billable"]
    assert billed == 6

    second = stack.submit()
    stack.run_open(second)

    assert stack.stats()["billable"] == billed
    assert stack.statuses(second) == stack.statuses(first)
    with session_scope() as session:
        report = build_report(session, second)
    assert report.done
    assert report.reused == 6
    assert report.billable_calls == 0
    assert report.attempts == 0


def test_force_calls_again(stack: Stack) -> None:
    stack.run_open(stack.submit())
    stack.run_open(stack.submit(kind=BatchKind.RERUN))  # what ``idbatch submit --force`` makes
    assert stack.stats()["billable"] == 12


def test_redelivered_message_is_acknowledged_without_a_call(stack: Stack) -> None:
    batch = stack.submit()
    job_id = stack.jobs(batch)[0].id
    first = process_job(job_id, runtime())
    again = process_job(job_id, runtime())
    assert first.status in (JobStatus.PASSED, JobStatus.NEGATIVE)
    assert again.status is None
    assert stack.stats()["billable"] == 1


def test_same_card_in_flight_waits_for_the_first_answer(stack: Stack) -> None:
    batch = stack.submit(_with_duplicates(stack.manifest, 1))
    jobs = stack.jobs(batch)
    original, duplicate = jobs[0], jobs[-1]
    rt = runtime()
    # The original is being verified right now: claimed, content key held.
    with session_scope() as session:
        claimed = claim(session, original.id, "other-worker", 300)
    assert claimed is not None
    front = image_source(rt, claimed.front_image or "", claimed.source, claimed.provider)
    back = (
        image_source(rt, claimed.back_image, claimed.source, claimed.provider) if claimed.back_image else None
    )
    key = content_key(claimed, front, back)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == original.id).values(content_key=key))

    outcome = process_job(duplicate.id, rt)

    assert outcome.status == JobStatus.RETRY_WAIT
    assert stack.stats()["calls"] == 0
    with session_scope() as session:
        job = session.get_one(Job, duplicate.id)
        assert job.attempt_count == 0  # waiting is not an attempt
        assert job.content_key is None


def test_database_refuses_a_second_running_holder_of_a_content_key(stack: Stack) -> None:
    batch = stack.submit()
    a, b = (j.id for j in stack.jobs(batch)[:2])
    with session_scope() as session:
        session.execute(update(Job).where(Job.id.in_([a, b])).values(status=JobStatus.RUNNING))
        session.execute(update(Job).where(Job.id == a).values(content_key="k" * 64))
    with pytest.raises(IntegrityError), session_scope() as session:
        session.execute(update(Job).where(Job.id == b).values(content_key="k" * 64))


def test_database_refuses_a_second_result_for_a_job(stack: Stack) -> None:
    batch = stack.submit()
    job_id = stack.jobs(batch)[0].id
    process_job(job_id, runtime())
    with session_scope() as session:
        existing = session.scalars(select(Result).where(Result.job_id == job_id)).one()
        verdict = existing.verdict
    with pytest.raises(IntegrityError), session_scope() as session:
        session.add(Result(job_id=job_id, provider="acedata", verdict=verdict))
