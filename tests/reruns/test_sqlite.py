"""The embedded default (SQLite) runs the same rerun path: budget, slot firing, drift, export."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
from sqlalchemy import func, update

from db import schedules
from db.drift import drift
from db.export import COLUMNS, column_pages
from db.migrate import upgrade
from db.models_rerun import RerunSchedule
from db.session import session_scope
from idbatch.export import export
from idbatch.reruns import RerunPolicy
from producers.rerun import rerun
from producers.submit import submit_path
from simulator.cards import load_registry
from simulator.samples import generate_sample
from tests.conftest import Env, Simulator
from tests.reruns.conftest import runnable
from workers.runtime import runtime
from workers.schedules import fire_due
from workers.verify import process_job


def _work(batch: int) -> None:
    for _ in range(50):
        ids = runnable(batch)
        if not ids:
            return
        for job_id in ids:
            process_job(job_id, runtime())
    raise AssertionError("batch did not finish")


def test_rerun_schedule_drift_and_export_on_sqlite(
    env: Env, simulator: Simulator, gateway: str, tmp_path: Path
) -> None:
    sample = generate_sample(tmp_path / "cards", 5, seed=5, defects=False, with_back=False)
    simulator.state.registry.update(load_registry(tmp_path / "cards" / "registry.jsonl"))  # type: ignore[attr-defined]
    settings = env(acedata_base_url=simulator.url, ratelimit_backend="off")
    upgrade(settings.database_url)
    parent = submit_path(tmp_path / "cards" / "manifest.csv", settings=settings, enqueue=False).batch_id
    _work(parent)

    capped = rerun(settings, parent, RerunPolicy(budget=3), publish=lambda ids: None)
    assert (capped.plan.to_send, capped.plan.held) == (3, 2)
    assert capped.batch_id is not None
    _work(capped.batch_id)

    simulator.state.revoke([sample[0].values["id_number"]])  # type: ignore[attr-defined]
    with session_scope() as session:
        schedules.add(session, "nightly", "0 2 * * *", parent, RerunPolicy())
        session.execute(update(RerunSchedule).values(last_slot=func.datetime("now", "-2 days")))
    fired = fire_due(settings, lambda ids: None)
    assert len(fired) == 1 and fire_due(settings, lambda ids: None) == []
    child = fired[0]["batch"]
    assert fired[0]["parent"] == capped.batch_id  # the lineage's latest batch
    _work(child)
    with session_scope() as session:
        report = drift(session, child, parent)
    assert [c["ref"] for c in report.changes] == [sample[0].values["external_ref"]]
    with session_scope() as session:  # a limit shortens the list, not the count
        capped_report = drift(session, child, parent, limit=0).as_dict()
    assert (capped_report["changed"], capped_report["listed"], capped_report["changes"]) == (1, 0, [])

    with session_scope() as session:
        assert export(column_pages(session, child), COLUMNS, "csv", str(tmp_path / "o.csv"), settings) == 5
    with session_scope() as session:
        assert (
            export(column_pages(session, child), COLUMNS, "parquet", str(tmp_path / "o.parquet"), settings)
            == 5
        )
    with (tmp_path / "o.csv").open(encoding="utf-8") as fh:
        exported = list(csv.DictReader(fh))
    assert sorted(r["status"] for r in exported) == ["negative", "passed", "passed", "passed", "passed"]
    assert pq.read_table(tmp_path / "o.parquet").num_rows == 5
    # SQLite keeps no offset: the export still says UTC, as the Postgres path writes it
    assert all(dt.datetime.fromisoformat(r["answered_at"]).utcoffset() == dt.timedelta(0) for r in exported)


def test_a_two_sided_card_costs_two_calls_of_the_budget(env: Env) -> None:
    from sqlalchemy import insert

    from db import reruns
    from db.ingest import create_batch
    from db.models import Job
    from idbatch.domain import BatchKind, JobStatus
    from idbatch.reruns import today

    settings = env()
    upgrade(settings.database_url)
    batch = create_batch("m.csv", BatchKind.BACKFILL, "tencent_ocr", {})
    with session_scope() as session:
        session.execute(
            insert(Job),
            [
                {
                    "batch_id": batch,
                    "row_number": i,
                    "front_image": f"f{i}.jpg",
                    "back_image": None if i == 3 else f"b{i}.jpg",  # row 3: front only, one call
                    "status": JobStatus.PASSED,
                }
                for i in range(1, 6)
            ],
        )
    with session_scope() as session:
        plan = reruns.plan(session, batch, RerunPolicy(budget=5), today(settings))
    # rows 1, 2 (2 calls each) fit 4; row 3 (1 call) makes 5; rows 4, 5 wait
    assert (plan.to_send, plan.held, plan.max_calls) == (3, 2, 5)
