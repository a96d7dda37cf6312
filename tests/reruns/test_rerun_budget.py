"""A rerun re-verifies stored cards with fresh calls, within its budget; the rest stay pending."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from db import reruns
from db.drift import drift
from db.models import Job
from db.session import session_scope
from idbatch.domain import ErrorClass, JobStatus
from idbatch.reruns import RerunPolicy, today
from producers.rerun import release, rerun
from tests.durability.conftest import Stack
from tests.reruns.conftest import work
from workers.sweeper import sweep

pytestmark = pytest.mark.integration


def _statuses(stack: Stack, batch: int) -> Counter[str]:
    return Counter(j.status.value for j in stack.jobs(batch))


def test_budget_sends_only_what_it_pays_for_and_keeps_the_rest_pending(stack: Stack) -> None:
    parent = stack.submit()
    work(stack, parent)
    billed_before = stack.stats()["billable"]
    assert _statuses(stack, parent) == {"passed": 6}

    dry = rerun(stack.settings, parent, RerunPolicy(budget=4), dry_run=True, publish=stack.published.extend)
    assert dry.batch_id is None
    assert dry.plan.as_dict() | {"max_cost": dry.cost} == {
        "parent": parent,
        "provider": "acedata",
        "cards_selected": 6,
        "cards_sent": 4,
        "cards_held_by_budget": 2,
        "max_billable_calls": 4,
        "budget": 4,
        "max_cost": None,
    }

    made = rerun(stack.settings, parent, RerunPolicy(budget=4), publish=stack.published.extend)
    child = made.batch_id
    assert child is not None
    assert len(stack.published) == 4  # only what the budget pays for was sent
    # the sweeper never sends the held cards, however long they wait (the queued ones,
    # a month "late", count as lost messages and are sent again: harmless)
    sweep(stack.settings, stack.published.extend, queue_depth=lambda: 0, now=lambda: _far_future())
    held_ids = {j.id for j in stack.jobs(child) if j.status == JobStatus.PENDING}
    assert len(held_ids) == 2
    assert not held_ids & set(stack.published)
    work(stack, child)
    assert _statuses(stack, child) == {"passed": 4, "pending": 2}
    assert stack.stats()["billable"] - billed_before == 4  # fresh calls, not reused answers
    held = [j for j in stack.jobs(child) if j.status == JobStatus.PENDING]
    assert all(j.error_class == ErrorClass.BUDGET for j in held)
    # the rows kept their parent's row numbers and refs
    with session_scope() as session:
        assert reruns.parent_of(session, child) == parent
        pairs = session.execute(select(Job.row_number, Job.external_ref).where(Job.batch_id == child)).all()
        parents = session.execute(
            select(Job.row_number, Job.external_ref).where(Job.batch_id == parent)
        ).all()
        assert sorted(pairs) == sorted(parents)
        report = drift(session, child, parent)
    assert (report.compared, report.not_compared, report.changes) == (4, 2, [])

    assert release(stack.settings, child, None, stack.published.extend) == 2
    work(stack, child)
    assert _statuses(stack, child) == {"passed": 6}
    assert stack.stats()["billable"] - billed_before == 6


def test_policy_selects_by_last_outcome_and_ref(stack: Stack) -> None:
    parent = stack.submit()
    work(stack, parent)
    with session_scope() as session:
        first = session.scalar(select(Job).where(Job.batch_id == parent).order_by(Job.row_number).limit(1))
        assert first is not None
        first.status = JobStatus.NEGATIVE
        ref = first.external_ref
    day = today(stack.settings)
    with session_scope() as session:
        assert reruns.plan(session, parent, RerunPolicy(only=("negative",)), day).selected == 1
        assert reruns.plan(session, parent, RerunPolicy(only=("passed",)), day).selected == 5
        assert reruns.plan(session, parent, RerunPolicy(only=("failed",)), day).selected == 0
        assert reruns.plan(session, parent, RerunPolicy(ref_prefix=ref), day).selected == 1
        assert reruns.plan(session, parent, RerunPolicy(older_than_days=1), day).selected == 0
        assert (
            reruns.plan(session, parent, RerunPolicy(only=("expiring",)), day).selected == 0
        )  # FaceID: no validity


def _far_future():  # type: ignore[no-untyped-def]
    import datetime as dt

    return dt.datetime.now(dt.UTC) + dt.timedelta(days=30)


def test_a_ref_no_longer_readable_becomes_a_rejected_job_with_the_reason(stack: Stack) -> None:
    parent = stack.submit()
    work(stack, parent)
    gone = sorted((stack.manifest.parent / "images").glob("*-front.jpg"))[0]
    gone.unlink()
    child = rerun(stack.settings, parent, RerunPolicy(), publish=stack.published.extend).batch_id
    assert child is not None
    work(stack, child)
    assert _statuses(stack, child) == {"passed": 5, "rejected": 1}
    (rejected,) = [j for j in stack.jobs(child) if j.status == JobStatus.REJECTED]
    assert rejected.external_ref == gone.name.removesuffix("-front.jpg")
    assert "image not readable" in (rejected.last_error or "")


def test_policy_by_age_of_the_answer_and_by_validity(stack: Stack) -> None:
    import datetime as dt

    from sqlalchemy import update

    from db.models import Result

    parent = stack.submit()
    work(stack, parent)
    ids = [j.id for j in stack.jobs(parent)]
    day = today(stack.settings)
    with session_scope() as session:
        session.execute(
            update(Result)
            .where(Result.job_id == ids[0])
            .values(answered_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
        )
        session.execute(
            update(Result).where(Result.job_id == ids[1]).values(valid_to=day + dt.timedelta(days=10))
        )
        session.execute(
            update(Result).where(Result.job_id == ids[2]).values(valid_to=day - dt.timedelta(days=1))
        )
    with session_scope() as session:

        def chosen(policy: RerunPolicy) -> int:
            return reruns.plan(session, parent, policy, day).selected

        assert chosen(RerunPolicy(older_than_days=30)) == 1
        assert chosen(RerunPolicy(older_than_days=50)) == 0
        assert chosen(RerunPolicy(only=("expiring",))) == 2  # within 30 days, or already past
        assert chosen(RerunPolicy(expiring_within_days=5)) == 1
        assert chosen(RerunPolicy(older_than_days=30, expiring_within_days=30)) == 0  # AND


def test_a_rerun_of_a_tenants_batch_is_the_tenants_on_the_same_accounts(stack: Stack) -> None:
    from db.models import Batch
    from db.models_api import Tenant

    parent = stack.submit()
    work(stack, parent)
    with session_scope() as session:  # made the tenant's afterwards: only the copy is tested
        tenant = Tenant(name="acme", s3_allowed=[], providers=[], accounts={"acedata": ["k1"]})
        session.add(tenant)
        session.flush()
        batch = session.get(Batch, parent)
        assert batch is not None
        batch.tenant_id, batch.accounts = tenant.id, {"acedata": ["k1"]}
        tenant_id = tenant.id
    child = rerun(stack.settings, parent, RerunPolicy(), publish=lambda ids: None).batch_id
    with session_scope() as session:
        made = session.get(Batch, child)
        assert made is not None
        assert (made.tenant_id, made.accounts) == (tenant_id, {"acedata": ["k1"]})
