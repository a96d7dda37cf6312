"""A real ``idbatch worker`` serves /metrics; scraped during a batch, its counters move and
end at the totals the database and the simulator hold."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from db.models import Attempt, Job
from db.session import session_scope
from idbatch.domain import TERMINAL_STATUSES, AttemptOutcome
from producers.submit import submit_path
from simulator.cards import load_registry
from tests.conftest import Env
from tests.durability.conftest import Stack, make_sample
from tests.ops.conftest import free_port, start_worker, stop, until

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(
        v for (n, ls), v in samples.items() if n == name and all((k, val) in ls for k, val in labels.items())
    )


def test_metrics_of_a_real_worker_reach_the_batch_totals(on_redis: Stack, env: Env, tmp_path: Path) -> None:
    port = free_port()
    stack = on_redis
    # 14 cards, 10 of them enrolled (passed), 4 unknown to the registry (negative); 5xx
    # faults make retries, errors and, with two attempts only, some failed jobs.
    manifest, registry = make_sample(tmp_path / "more", 14, seed=5)
    enrolled = dict(list(load_registry(registry).items())[:10])
    stack.sim_state.registry.update(enrolled)  # type: ignore[attr-defined]
    stack.faults(rate_5xx=0.3, latency_ms=150)
    stack.settings = env(metrics_port=str(port), max_attempts="2")
    worker = start_worker(tmp_path / "worker.log", "--concurrency=2", "--loglevel=INFO")
    try:
        until(lambda: _serving(port), "the worker's /metrics")
        before = scrape(port)
        assert total(before, "idbatch_job_outcomes_total") == 0
        batch = submit_path(manifest, settings=stack.settings).batch_id
        seen: list[float] = []

        def finished() -> bool:
            seen.append(total(scrape(port), "idbatch_job_outcomes_total"))
            return set(stack.statuses(batch)) <= TERMINAL_STATUSES

        until(finished, "every job terminal")
        after = scrape(port)
    finally:
        stop(worker)

    statuses = Counter(s.value for s in stack.statuses(batch))
    with session_scope() as session:
        job_ids = select(Job.id).where(Job.batch_id == batch).scalar_subquery()
        attempts = session.execute(
            select(func.count(), func.count(Attempt.error)).where(
                Attempt.job_id.in_(job_ids), Attempt.outcome != AttemptOutcome.IN_FLIGHT
            )
        ).one()
    sim = stack.sim_state.stats_json()["accounts"]  # type: ignore[attr-defined]
    sim_billable = sum(int(a.get("billable", 0)) for a in sim.values())

    # the counters moved while the batch ran, not only at the end
    final = total(after, "idbatch_job_outcomes_total")
    assert any(0 < v < final for v in seen), (seen, final)
    assert seen == sorted(seen)  # counters only ever go up
    for status in ("passed", "negative", "failed"):
        got = total(after, "idbatch_job_outcomes_total", status=status, kind="backfill")
        assert got == statuses.get(status, 0), (status, got, statuses)
    assert statuses["passed"] > 0 and statuses["negative"] > 0
    assert total(after, "idbatch_provider_calls_total") == attempts[0]
    assert total(after, "idbatch_provider_calls_total", outcome="error") == attempts[1] > 0
    assert total(after, "idbatch_provider_errors_total") == attempts[1]
    assert total(after, "idbatch_billable_calls_total") == sim_billable > 0
    assert total(after, "idbatch_provider_call_seconds_count") == attempts[0]
    assert total(after, "idbatch_job_outcomes_total", status="retry_wait") > 0
    assert total(after, "idbatch_calls_in_flight") == 0
    assert ("idbatch_broker_queue_depth", (("queue", stack.settings.queue),)) in after


def _serving(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
