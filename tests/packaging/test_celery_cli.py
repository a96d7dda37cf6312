"""``celery -A workers.celery_app worker|beat`` work as Celery users expect, from any directory.

The worker consumes every queue idbatch uses with the thread pool, and beat keeps its
schedule under the data dir: started in an empty directory against a real Redis, the
beat's sweep reaches the worker through the sweep queue.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import TEST_PII_KEY

pytestmark = pytest.mark.integration

CELERY = str(Path(sys.executable).parent / "celery")


def _start(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [CELERY, "-A", "workers.celery_app", *args],
        cwd=cwd,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait_for(log: Path, text: str, procs: list[subprocess.Popen[bytes]], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        for proc in procs:
            assert proc.poll() is None, f"exited early:\n{log.read_text(errors='replace')[-3000:]}"
        time.sleep(0.3)
    pytest.fail(f"{text!r} not seen in {log.name}:\n{log.read_text(errors='replace')[-3000:]}")


def test_plain_celery_worker_and_beat_start_from_an_empty_directory(
    tmp_path: Path, redis_url: str, pg_url: str
) -> None:
    from db.migrate import upgrade

    upgrade(pg_url)
    empty = tmp_path / "empty"
    empty.mkdir()
    queue = f"idbatch.clitest.{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDBATCH_")}
    env |= {
        "IDBATCH_BROKER_URL": redis_url,
        "IDBATCH_DATABASE_URL": pg_url,
        "IDBATCH_QUEUE": queue,
        "IDBATCH_PII_KEY": TEST_PII_KEY,
        "IDBATCH_DATA_DIR": str(tmp_path / "data" / "nested"),  # does not exist yet
        "IDBATCH_SWEEP_INTERVAL_S": "0.5",
        "IDBATCH_WORKER_CONCURRENCY": "3",
    }
    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
    # DEBUG: the sweep's routine lines (every 0.5 s here) are logged at DEBUG (issue 16)
    worker = _start(
        ["worker", "--loglevel=DEBUG", "--without-gossip", "--without-mingle"], empty, env, worker_log
    )
    beat = _start(["beat", "--loglevel=DEBUG"], empty, env, beat_log)
    procs = [worker, beat]
    try:
        _wait_for(worker_log, "ready.", procs)
        banner = worker_log.read_text(errors="replace")
        assert "concurrency: 3 (thread)" in banner
        assert f".> {queue} " in banner and f".> {queue}.sweep " in banner
        _wait_for(beat_log, "Sending due task sweep", procs)
        # the sweep travelled beat -> sweep queue -> this worker
        _wait_for(worker_log, "Task idbatch.sweep[", procs)
        assert (tmp_path / "data" / "nested").is_dir()
        time.sleep(2)
        assert worker.poll() is None and beat.poll() is None  # still running
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
