"""The beat resolves upload sides whose pairing window ended, with no listener running (issue 19).

The task is run as a worker runs it (``idbatch.events.sweep`` on a Celery app with the
in-memory broker); every expired side ends in a job with its precise reason, a side still
inside its window stays pending, and the jobs made are published on that app's broker.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from db.ingest import standing_batch
from db.migrate import upgrade
from db.models import Job
from db.models_events import EventObject
from db.session import session_scope
from dispatch.app import EVENTS_SWEEP, create_celery, sweep_queue
from idbatch.domain import JobStatus
from idbatch.settings import Settings
from idbatch.storage.base import ObjectInfo
from producers.pairing import Side, record_sides
from tests.conftest import Env, fresh_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_db(env: Env) -> Iterator[Settings]:
    """A database of its own: the sweep resolves every batch's expired sides there is."""
    with fresh_database("idbatch_evbeat") as url:
        upgrade(url)
        yield env(database_url=url, events_pair_window_s=60)


def _side(batch: int, ref: str, name: str) -> Side:
    url = f"s3://kyc/{ref}-{name}.jpg"
    return Side(batch, ObjectInfo(url, url[5:], 10, "etag-1"), f"kyc/{ref}", name, ref)


def test_beat_task_expires_lone_sides_with_their_reasons(own_db: Settings) -> None:
    ace = standing_batch("sqs:beat-test", "acedata", {})
    ocr = standing_batch("events:beat-ocr", "tencent_ocr", {})
    now = dt.datetime.now(dt.UTC)
    old, fresh = now - dt.timedelta(seconds=61), now - dt.timedelta(seconds=5)
    # E's front went to a job when its window ended; its back arrives later still
    assert record_sides([_side(ace, "E", "front")], lambda ids: None, old - dt.timedelta(seconds=100)).pending
    from producers.events_beat import expire_sides

    assert expire_sides(lambda ids: None, old - dt.timedelta(seconds=30)).jobs == 1
    sides = [
        _side(ace, "A", "front"),
        _side(ocr, "B", "front"),
        _side(ace, "C", "back"),
        _side(ace, "E", "back"),
    ]
    assert record_sides(sides, lambda ids: None, old).pending == 4
    assert record_sides([_side(ace, "D", "front")], lambda ids: None, fresh).pending == 1

    app = create_celery(own_db, include=["producers.events_beat"])
    app.loader.import_default_modules()
    assert EVENTS_SWEEP in app.tasks
    # what a worker does when beat sends it; `.result`, not `.get()`: an in-process worker
    # started by an earlier test sets Celery's process-wide "inside a worker" flag, and
    # `.get()` then refuses to block even on an eager result
    swept = app.tasks[EVENTS_SWEEP].apply()
    assert swept.successful() and swept.result == 4

    with session_scope() as session:
        made = list(session.scalars(select(Job).where(Job.batch_id.in_([ace, ocr]))))
        pending = list(session.scalars(select(EventObject.url).where(EventObject.job_id.is_(None))))
    jobs = {j.external_ref: j for j in made if j.external_ref != "E"}
    assert jobs["A"].status == JobStatus.QUEUED and jobs["A"].back_image is None  # AceData reads the front
    assert jobs["B"].status == JobStatus.REJECTED
    assert jobs["B"].last_error == (
        "no back image within the 60 s pairing window (B-back.<ext>); tencent_ocr reads both sides"
    )
    assert jobs["C"].status == JobStatus.REJECTED
    assert jobs["C"].last_error == "back image without a front within the 60 s pairing window (C-front.<ext>)"
    late = [j for j in made if j.external_ref == "E" and j.front_image is None]
    front_job = next(j for j in made if j.external_ref == "E" and j.front_image)
    assert len(late) == 1 and late[0].status == JobStatus.REJECTED
    assert f"the card's front came earlier and is job {front_job.id}" in (late[0].last_error or "")
    assert pending == ["s3://kyc/D-front.jpg"]  # still inside its window: untouched
    # every object in exactly one job
    assert sorted(u for j in made for u in (j.front_image, j.back_image) if u) == sorted(
        f"s3://kyc/{r}.jpg" for r in ("A-front", "B-front", "C-back", "E-front", "E-back")
    )
    # the queued one was published on the app's broker
    with app.connection_for_write() as conn:
        depth = conn.default_channel.queue_declare(own_db.queue, passive=True).message_count
    assert depth == 1


def test_beat_schedules_the_events_sweep_and_workers_serve_it(env: Env) -> None:
    settings = env()
    app = create_celery(settings)
    entry = next(e for e in app.conf.beat_schedule.values() if e["task"] == EVENTS_SWEEP)
    assert entry["schedule"] == settings.sweep_interval_s
    assert app.conf.task_routes[EVENTS_SWEEP] == {"queue": sweep_queue(settings)}
    assert "producers.events_beat" in (ROOT / "workers" / "celery_app.py").read_text()
