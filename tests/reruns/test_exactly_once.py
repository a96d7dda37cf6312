"""A slot fires exactly once however many processes race for it (Postgres unique row)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select, update

from db import schedules
from db.models import Batch
from db.models_rerun import RerunFiring, RerunLink, RerunSchedule
from db.session import session_scope
from idbatch.reruns import RerunPolicy, today
from tests.durability.conftest import Stack
from tests.reruns.conftest import work
from workers.schedules import fire_due

pytestmark = pytest.mark.integration


def test_eight_racing_firers_make_one_rerun(stack: Stack) -> None:
    parent = stack.submit()
    work(stack, parent)
    with session_scope() as session:
        schedules.add(session, "nightly", "0 2 * * *", parent, RerunPolicy())
        # created two days ago: two slots passed since, only the latest fires
        session.execute(update(RerunSchedule).values(last_slot=func.now() - dt.timedelta(days=2, hours=1)))
    published: list[list[int]] = []
    results: list[list[dict[str, object]]] = []
    barrier = threading.Barrier(8)

    def fire() -> None:
        barrier.wait()
        results.append(fire_due(stack.settings, published.append))

    threads = [threading.Thread(target=fire) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r) for r in results) == 1
    with session_scope() as session:
        firings = session.scalars(select(RerunFiring)).all()
        assert len(firings) == 1 and firings[0].outcome == "fired"
        assert session.scalar(select(func.count()).select_from(RerunLink)) == 1
        assert session.scalar(select(func.count()).select_from(Batch)) == 2
    assert sum(len(p) for p in published) == 6
    # the next tick finds nothing due: the slot is recorded
    assert fire_due(stack.settings, published.append) == []


def test_run_now_and_a_skipped_slot_while_the_last_run_is_open(stack: Stack) -> None:
    from producers.rerun import run_now

    parent = stack.submit()
    work(stack, parent)
    with session_scope() as session:
        schedules.add(session, "adhoc", "0 2 1 1 *", parent, RerunPolicy(budget=2))
    first = run_now(stack.settings, "adhoc", stack.published.extend)
    assert first is not None and first["outcome"] == "fired" and first["cards_sent"] == 2
    # its two cards are still queued: a second firing now would pay for them twice
    with session_scope() as session:
        due = schedules.by_name(session, "adhoc")
    due = schedules.Due(
        due.schedule_id, due.name, due.batch_id, due.policy, due.slot + dt.timedelta(seconds=5)
    )
    second = schedules.fire_slot(due, today(stack.settings), "test", lambda s, ids: None)
    assert second is not None and second["outcome"] == "skipped"
    with session_scope() as session:
        assert [f["outcome"] for f in schedules.firings(session, "adhoc")] == ["fired", "skipped"]
