"""Celery events from a real worker (what Flower shows): a job that failed is a
``task-failed``, never a ``task-succeeded``; one waiting to retry is a ``task-retried``."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app.embedded import current_app
from idbatch.domain import TERMINAL_STATUSES, JobStatus
from producers.submit import submit_path
from tests.conftest import Env
from tests.durability.conftest import Stack
from tests.ops.conftest import start_worker, stop, until

pytestmark = pytest.mark.integration


def test_failed_jobs_are_task_failed_events(on_redis: Stack, env: Env, tmp_path: Path) -> None:
    stack = on_redis
    stack.faults(rate_5xx=1.0)  # every call fails: first a retry, then failed
    stack.settings = env(max_attempts="2")
    app = current_app(stack.settings)
    events: list[dict[str, Any]] = []
    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": events.append})
        thread = threading.Thread(target=lambda: receiver.capture(limit=None, timeout=None, wakeup=False))
        thread.daemon = True
        thread.start()
        time.sleep(0.5)  # the receiver's queue is bound before the first event
        worker = start_worker(tmp_path / "worker.log", "--concurrency=2", "--loglevel=INFO", "-E")
        try:
            batch = submit_path(stack.manifest, settings=stack.settings).batch_id
            until(lambda: set(stack.statuses(batch)) <= TERMINAL_STATUSES, "every job terminal")
            jobs = len(stack.jobs(batch))
            until(lambda: _count(events)["task-failed"] >= jobs, "a task-failed event per job", 30)
        finally:
            receiver.should_stop = True
            stop(worker)
    assert set(stack.statuses(batch)) == {JobStatus.FAILED}
    names = {e["uuid"]: e.get("name") for e in events if e["type"] == "task-received"}
    verify_ids = {u for u, n in names.items() if n == "idbatch.verify"}
    succeeded = [e for e in events if e["type"] == "task-succeeded" and e["uuid"] in verify_ids]
    assert succeeded == []
    counts = _count(e for e in events if e.get("uuid") in verify_ids)
    assert counts["task-failed"] == jobs and counts["task-retried"] >= jobs


def _count(events: Any) -> Counter[str]:
    return Counter(e["type"] for e in list(events))
