"""``idbatch events sweep``: lone sides are resolved from the ledger by any process, on
Postgres and SQLite alike, with no listener running (issue 19)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import app
from db.ingest import standing_batch
from db.migrate import upgrade
from db.models import Job
from db.session import session_scope
from idbatch.domain import JobStatus
from idbatch.settings import Settings
from idbatch.storage.base import ObjectInfo
from producers.pairing import Side, record_sides
from tests.conftest import Env, fresh_database


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_events_sweep_resolves_sides_whose_window_ended(backend: str, env: Env) -> None:
    # A database of its own: `events pending` and `events sweep` see every batch's sides, and
    # the shared run database holds other tests' listeners (they would count here, and this
    # test's lone sides would be swept into theirs).
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_database("idbatch_evcli")) if backend == "postgres" else None
        _sweep_resolves_lone_sides(backend, env(**({"database_url": url} if url else {})))


def _sweep_resolves_lone_sides(backend: str, settings: Settings) -> None:
    upgrade(settings.database_url)
    ocr = standing_batch(f"events:test-{backend}", "tencent_ocr", {})
    face = standing_batch(f"events:face-{backend}", "tencent_faceid", {})
    old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settings.events_pair_window_s + 5)

    def side(batch: int, ref: str, name: str) -> Side:
        url = f"s3://b/{ref}-{name}.jpg"
        return Side(batch, ObjectInfo(url, url[7:], 10, f"e-{backend}"), f"b/{ref}", name, ref)

    sides = [side(ocr, "A", "front"), side(face, "B", "front"), side(face, "C", "back")]
    assert record_sides(sides, lambda ids: None, old).pending == 3

    out = CliRunner().invoke(app, ["events", "pending"])
    assert json.loads(out.output)["pending_sides"] == 3
    out = CliRunner().invoke(app, ["events", "sweep"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"jobs": 1, "rejected": 2}
    with session_scope() as session:
        jobs = {j.external_ref: j for j in session.scalars(select(Job).where(Job.batch_id.in_([ocr, face])))}
    assert jobs["B"].status == JobStatus.QUEUED and jobs["B"].back_image is None  # FaceID reads the front
    assert "tencent_ocr reads both sides" in (jobs["A"].last_error or "")
    assert "back image without a front" in (jobs["C"].last_error or "")
    assert json.loads(CliRunner().invoke(app, ["events", "pending"]).output)["pending_sides"] == 0
