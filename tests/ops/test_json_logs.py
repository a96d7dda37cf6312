"""JSON mode: every line a real worker writes during a batch is JSON, Celery's own lines
included, and none holds an ID-number-shaped string or a cardholder's name."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from idbatch.domain import TERMINAL_STATUSES
from idbatch.pii import ID_NUMBER_RE
from producers.submit import submit_path
from simulator.cards import load_registry
from tests.conftest import Env
from tests.durability.conftest import Stack, make_sample
from tests.ops.conftest import start_worker, stop, until

pytestmark = pytest.mark.integration


def test_every_worker_line_is_json_without_pii(on_redis: Stack, env: Env, tmp_path: Path) -> None:
    stack = on_redis
    manifest, registry = make_sample(tmp_path / "cards", 10, seed=8)
    stack.sim_state.registry.update(dict(list(load_registry(registry).items())[:7]))  # type: ignore[attr-defined]
    # faults: retries, errors and failed jobs, so failure lines are in the output too
    stack.faults(rate_5xx=0.3)
    stack.settings = env(log_json="true", max_attempts="2")
    log = tmp_path / "worker.log"
    worker = start_worker(log, "--concurrency=2", "--loglevel=INFO")
    try:
        batch = submit_path(manifest, settings=stack.settings).batch_id
        until(lambda: set(stack.statuses(batch)) <= TERMINAL_STATUSES, "every job terminal")
    finally:
        assert stop(worker) == 0

    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not JSON: {line[:200]!r}")
    assert all(isinstance(r, dict) and "event" in r and "level" in r for r in records)
    loggers = {r.get("logger") for r in records}
    assert {"celery.worker.strategy", "celery.app.trace", "celery.apps.worker"} <= loggers  # Celery's own
    assert len(records) >= 2 * len(stack.jobs(batch))  # received + finished per job, at least

    text = "\n".join(lines)
    assert not ID_NUMBER_RE.search(text)
    with manifest.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for column in ("name", "id_number"):
            if row.get(column):
                assert row[column] not in text, column
    for entry in load_registry(registry).values():
        assert entry.name not in text
