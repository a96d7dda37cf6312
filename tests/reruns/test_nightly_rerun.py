"""The nightly compliance rerun, end to end (issue 15's "Must show").

A 500-card backfill (AceData: FaceID's registry check) and a 60-card backfill (Tencent
OCR: reads validity off the back) run on real worker processes over Redis and Postgres.
Between the runs the simulator's registry revokes 7 identities and the validity clock
moves forward (``IDBATCH_CLOCK_OFFSET_DAYS`` in the workers: no protocol judges expiry,
idbatch does). Two real ``celery beat`` processes then tick every 0.5 s; each schedule's
slot fires exactly once. The AceData schedule has a budget of 300 billable calls: the
run stops there with 200 cards pending (never sent), and drift lists exactly the
revoked cards among the 300; released, the 200 finish and drift lists exactly all 7.
The OCR rerun's drift lists exactly the cards the moved clock expired.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from app.cli import app as cli
from app.embedded import current_app
from db.drift import drift
from db.migrate import upgrade
from db.models import Job, Result
from db.models_rerun import RerunFiring, RerunLink, RerunSchedule
from db.session import session_scope
from idbatch.domain import ErrorClass, JobStatus
from idbatch.servers import BackgroundServer
from producers.rerun import release
from producers.submit import submit_path
from simulator.cards import load_registry
from simulator.samples import generate_sample
from tests.conftest import SIM_ACEDATA_TOKEN, Env, fresh_database
from tests.reruns.conftest import runnable

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ACE = f"acedata:{SIM_ACEDATA_TOKEN}"
REVOKED_ROWS = (3, 77, 150, 299, 301, 420, 500)  # four inside the budget's 300, three beyond


def _until(pred: Callable[[], bool], what: str, limit_s: float = 150) -> None:
    deadline = time.monotonic() + limit_s  # a hang guard, not a performance assertion
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.25)


def _spawn(args: list[str], log: Path, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        env={**os.environ, **extra},
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _done(batch: int) -> bool:
    return not runnable(batch)


def _statuses(batch: int) -> Counter[str]:
    with session_scope() as session:
        return Counter(str(s) for s in session.scalars(select(Job.status).where(Job.batch_id == batch)))


def _by_row(batch: int) -> dict[int, str]:
    with session_scope() as session:
        return {
            int(r): str(ref)
            for r, ref in session.execute(
                select(Job.row_number, Job.external_ref).where(Job.batch_id == batch)
            )
        }


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_database("idbatch_rerun") as url:
        yield url


def test_nightly_rerun_fires_once_with_two_beats_and_drift_lists_exactly_the_changes(
    env: Env, database: str, redis_url: str, gateway: str, tmp_path: Path
) -> None:
    from simulator.app import create_app
    from simulator.state import SimState

    ace_rows = generate_sample(tmp_path / "ace", 500, seed=21, defects=False, with_back=False)
    generate_sample(tmp_path / "ocr", 60, seed=22, defects=False)
    registry = load_registry(tmp_path / "ace" / "registry.jsonl") | load_registry(
        tmp_path / "ocr" / "registry.jsonl"
    )
    state = SimState(registry=registry, seed=1, quotas={"acedata": 5000.0, "ocr": 5000.0})
    procs: list[subprocess.Popen[bytes]] = []
    with BackgroundServer(create_app(state, acedata_tokens={SIM_ACEDATA_TOKEN})) as sim:
        settings = env(
            database_url=database,
            broker_url=redis_url,
            acedata_base_url=sim.url,
            ocr_base_url=sim.url + "/tencent/ocr",
            tencent_secret_id="sim-tencent-secret-id",
            tencent_secret_key="sim-tencent-secret-key",
            ratelimit_backend="off",
            sweep_interval_s="0.5",
            schedule_check_s="0.5",
            requeue_after_s="5",
            reuse_max_age_days="30",
        )
        upgrade(settings.database_url)
        current_app(settings)
        try:
            # --- the backfills, on two real worker processes -----------------------------
            ace = submit_path(tmp_path / "ace" / "manifest.csv", settings=settings).batch_id
            ocr = submit_path(
                tmp_path / "ocr" / "manifest.csv", settings=settings, provider="tencent_ocr"
            ).batch_id
            procs += [
                _spawn(["app.cli", "worker", "--concurrency=16"], tmp_path / f"w{i}.log") for i in (1, 2)
            ]
            _until(lambda: _done(ace) and _done(ocr), "backfills terminal")
            assert _statuses(ace) == {"passed": 500}
            backfill_ocr = _statuses(ocr)
            billed_after_backfill = int(state.stats_json()["accounts"][ACE]["billable"])
            assert billed_after_backfill == 500

            # --- between the runs: the registry revokes, the clock moves ----------------
            revoked_ids = [ace_rows[r - 1].values["id_number"] for r in REVOKED_ROWS]
            answer = httpx.post(f"{sim.url}/_sim/revoke", json={"id_numbers": revoked_ids}).json()
            assert answer["revoked"] == 7
            today = dt.datetime.now(dt.UTC).date()
            with session_scope() as session:
                valid = dict(
                    session.execute(
                        select(Job.external_ref, Result.valid_to)
                        .join(Result, Result.job_id == Job.id)
                        .where(Job.batch_id == ocr, Job.status == JobStatus.PASSED)
                    )
                    .tuples()
                    .all()
                )
            future = sorted(v for v in valid.values() if v is not None and v >= today)
            offset = (future[4] - today).days + 1  # at least five cards expire by then
            expiring = {
                ref
                for ref, v in valid.items()
                if v is not None and today <= v < today + dt.timedelta(days=offset)
            }
            assert 5 <= len(expiring) < len(valid)
            _stop(procs)
            procs.clear()
            clock = {"IDBATCH_CLOCK_OFFSET_DAYS": str(offset)}
            procs += [
                _spawn(["app.cli", "worker", "--concurrency=16"], tmp_path / f"v{i}.log", **clock)
                for i in (1, 2)
            ]

            # --- two beats, two schedules whose 02:00 slot is due -----------------------
            beats = [
                _spawn(
                    [
                        "celery",
                        "-A",
                        "workers.celery_app",
                        "beat",
                        "--loglevel=DEBUG",  # the schedule task's routine lines are DEBUG
                        "-s",
                        str(tmp_path / f"beat{i}"),
                    ],
                    tmp_path / f"beat{i}.log",
                )
                for i in (1, 2)
            ]
            procs += beats
            runner = CliRunner()
            for name, batch, extra in (("nightly-ace", ace, ["--budget", "300"]), ("nightly-ocr", ocr, [])):
                result = runner.invoke(
                    cli, ["schedule", "add", name, "--batch", str(batch), "--cron", "0 2 * * *", *extra]
                )
                assert result.exit_code == 0, result.output
            with session_scope() as session:  # as if created two days ago: one slot (the latest) is due
                session.execute(update(RerunSchedule).values(last_slot=func.now() - dt.timedelta(days=2)))

            def reruns() -> dict[int, int]:
                with session_scope() as session:
                    return dict(
                        session.execute(select(RerunLink.parent_id, RerunLink.batch_id)).tuples().all()
                    )

            _until(lambda: len(reruns()) == 2, "both schedules fired")
            ace_rerun, ocr_rerun = reruns()[ace], reruns()[ocr]
            _until(lambda: _done(ace_rerun) and _done(ocr_rerun), "reruns done")
            time.sleep(3)  # six more beat ticks from each beat: nothing fires again
            _stop(beats)
            for i in (1, 2):
                assert "rerun-schedules" in (tmp_path / f"beat{i}.log").read_text()  # both beats were sending
            with session_scope() as session:
                firings = session.scalars(select(RerunFiring)).all()
                assert sorted((f.schedule_name, f.outcome) for f in firings) == [
                    ("nightly-ace", "fired"),
                    ("nightly-ocr", "fired"),
                ]
                assert session.scalar(select(func.count()).select_from(RerunLink)) == 2

            # --- the budget: 300 calls, then 200 cards pending, never sent ---------------
            assert _statuses(ace_rerun) == {"passed": 296, "negative": 4, "pending": 200}
            with session_scope() as session:
                held = session.scalars(
                    select(Job.row_number).where(Job.batch_id == ace_rerun, Job.status == JobStatus.PENDING)
                ).all()
                assert sorted(held) == list(range(301, 501))
                assert set(
                    session.scalars(
                        select(Job.error_class).where(
                            Job.batch_id == ace_rerun, Job.status == JobStatus.PENDING
                        )
                    )
                ) == {ErrorClass.BUDGET.value}
            assert int(state.stats_json()["accounts"][ACE]["billable"]) - billed_after_backfill == 300

            refs = _by_row(ace)
            with session_scope() as session:
                capped = drift(session, ace_rerun, ace)
            assert {c["ref"] for c in capped.changes} == {refs[r] for r in REVOKED_ROWS if r <= 300}
            assert all(
                c["status"] == "passed -> negative" and c["new_warnings"] == ["id_not_in_registry"]
                for c in capped.changes
            )
            assert (capped.compared, capped.not_compared) == (300, 200)

            # --- the OCR rerun: drift is exactly the cards the moved clock expired -------
            with session_scope() as session:
                expired = drift(session, ocr_rerun, ocr)
            assert {c["ref"] for c in expired.changes} == expiring
            assert all(
                c.get("newly_expired") and c["status"] == "passed -> negative" for c in expired.changes
            )
            assert expired.compared == backfill_ocr["passed"] + backfill_ocr.get("negative", 0)

            # --- the held cards are not lost: released, they finish ---------------------
            assert release(settings, ace_rerun, None) == 200
            _until(lambda: _done(ace_rerun), "released cards done")
            assert _statuses(ace_rerun) == {"passed": 493, "negative": 7}
            result = runner.invoke(cli, ["drift", str(ace_rerun)])
            assert result.exit_code == 0, result.output
            with session_scope() as session:
                full = drift(session, ace_rerun, ace)
            assert {c["ref"] for c in full.changes} == {refs[r] for r in REVOKED_ROWS}
            assert int(state.stats_json()["accounts"][ACE]["billable"]) - billed_after_backfill == 500
            assert (
                state.stats_json()["accounts"][ACE]["duplicate_billable"] == 500
            )  # each card twice: once per run
        finally:
            _stop(procs)
