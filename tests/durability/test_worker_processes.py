"""Real ``idbatch worker`` processes on real Redis: lost messages, SIGTERM, chaos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from app.embedded import current_app
from dispatch.app import sweep_queue
from idbatch.domain import TERMINAL_STATUSES, JobStatus
from producers.submit import submit_path
from tests.durability.conftest import Stack
from workers.sweeper import sweeper_thread

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _worker(concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", f"--concurrency={concurrency}", "--loglevel=INFO"],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _until(pred: Callable[[], bool], what: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s  # a hang guard, not a performance assertion
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def broker(stack: Stack, env: object, redis_url: str) -> str:
    stack.settings = env(broker_url=redis_url, sweep_interval_s="0.3")  # type: ignore[operator]
    current_app(stack.settings)
    return redis_url


def test_lost_messages_are_recovered_from_postgres(stack: Stack, broker: str, tmp_path: Path) -> None:
    batch = submit_path(stack.manifest, settings=stack.settings).batch_id
    r = redis.Redis.from_url(broker)
    for queue in (stack.settings.queue, sweep_queue(stack.settings)):  # Redis restarted: all gone
        r.delete(queue)
    app = current_app(stack.settings)
    worker = _worker(4, tmp_path / "worker.log")
    try:
        with sweeper_thread(stack.settings, app):
            _until(lambda: set(stack.statuses(batch)) <= TERMINAL_STATUSES, "every job terminal")
    finally:
        _stop(worker)
    assert stack.stats()["billable"] == len(stack.jobs(batch))
    assert stack.stats()["duplicate_billable"] == 0


def test_sigterm_lets_in_flight_calls_finish_and_record(stack: Stack, broker: str, tmp_path: Path) -> None:
    stack.faults(latency_ms=1500)
    batch = submit_path(stack.manifest, settings=stack.settings).batch_id
    worker = _worker(3, tmp_path / "worker.log")
    try:
        _until(lambda: JobStatus.RUNNING in stack.statuses(batch), "a call in flight")
        in_flight = [j.id for j in stack.jobs(batch) if j.status == JobStatus.RUNNING]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    finally:
        _stop(worker)
    jobs = {j.id: j for j in stack.jobs(batch)}
    assert JobStatus.RUNNING not in {j.status for j in jobs.values()}
    for job_id in in_flight:
        assert jobs[job_id].status in (JobStatus.PASSED, JobStatus.NEGATIVE, JobStatus.RETRY_WAIT)
    assert stack.stats()["billable"] == sum(
        j.status in (JobStatus.PASSED, JobStatus.NEGATIVE) for j in jobs.values()
    )


def test_chaos_ci_sized() -> None:
    """bench/chaos.py with a CI-sized batch: kills, a Redis restart, a Postgres disconnect."""
    proc = subprocess.run(
        [sys.executable, "bench/chaos.py", "--jobs", "300", "--kills", "2", "--redis-port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    why = f"{json.dumps(result)}\n--- bench stderr (tail) ---\n{proc.stderr[-4000:]}"
    assert result["lost"] == 0, why
    assert result["duplicate_results"] == 0, why
    assert result["unaccounted_billable_calls"] == 0, why  # every billed call has a record
    assert result["kills"] == 2, why
    assert result["redis_restarts"] == 1, why
    assert result["postgres_restarts"] == 1, why
    assert result["duplicate_billable_calls"] <= result["kills"] * result["worker_concurrency"], why
    assert result["resubmit_billable_calls_for_paid_cards"] == 0, why
    assert result["postgres_restart_method"].startswith("pg_ctl restart"), why
    assert result["ok"], why
