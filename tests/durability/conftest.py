"""Fixtures for durability tests: a fresh Postgres database per test, a card sample,
the simulator enrolled with it, and helpers that run jobs as plain function calls."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from db.migrate import upgrade
from db.models import Job
from db.session import session_scope
from idbatch.domain import TERMINAL_STATUSES, BatchKind, JobStatus
from idbatch.servers import BackgroundServer
from idbatch.settings import Settings
from producers.submit import submit_path
from simulator.cards import load_registry
from simulator.samples import generate_sample
from tests.conftest import SIM_ACEDATA_TOKEN, Env, fresh_database
from workers.runtime import runtime
from workers.sweeper import sweep
from workers.verify import process_job

ACCOUNT = f"acedata:{SIM_ACEDATA_TOKEN}"


@pytest.fixture
def pg_db() -> Iterator[str]:
    """A database of its own per test: content keys must not meet another test's cards."""
    with fresh_database("idbatch_d") as url:
        yield url


@dataclass
class Stack:
    settings: Settings
    manifest: Path
    sim_state: object
    sim_url: str
    published: list[int] = field(default_factory=list)

    def stats(self) -> dict[str, int]:
        acc = self.sim_state.stats_json()["accounts"].get(ACCOUNT, {})  # type: ignore[attr-defined]
        return {k: int(acc.get(k, 0)) for k in ("calls", "billable", "duplicate_billable")}

    def faults(self, **values: object) -> None:
        self.sim_state.faults.update(values)  # type: ignore[attr-defined]

    def submit(self, manifest: Path | None = None, kind: BatchKind = BatchKind.BACKFILL) -> int:
        result = submit_path(manifest or self.manifest, settings=self.settings, kind=kind, enqueue=False)
        return result.batch_id

    def jobs(self, batch_id: int) -> list[Job]:
        with session_scope() as session:
            return list(session.scalars(select(Job).where(Job.batch_id == batch_id).order_by(Job.id)))

    def run_open(self, batch_id: int, rounds: int = 200) -> None:
        """Work the batch to completion with plain calls; the sweeper dispatches retries."""
        for _ in range(rounds):
            open_ids = [j.id for j in self.jobs(batch_id) if j.status not in TERMINAL_STATUSES]
            if not open_ids:
                return
            for job_id in open_ids:
                process_job(job_id, runtime())
            sweep(self.settings, self.published.extend, queue_depth=lambda: 0)
            time.sleep(0.05)
        raise AssertionError("batch did not finish")

    def statuses(self, batch_id: int) -> list[JobStatus]:
        return [j.status for j in self.jobs(batch_id)]


def make_sample(folder: Path, count: int, seed: int) -> tuple[Path, Path]:
    generate_sample(folder, count, seed=seed, defects=False)
    return folder / "manifest.csv", folder / "registry.jsonl"


@pytest.fixture
def stack(env: Env, pg_db: str, gateway: str, tmp_path: Path) -> Iterator[Stack]:
    from simulator.app import create_app
    from simulator.state import SimState

    manifest, registry = make_sample(tmp_path / "cards", 6, seed=11)
    state = SimState(registry=load_registry(registry), seed=1)
    with BackgroundServer(create_app(state, acedata_tokens={SIM_ACEDATA_TOKEN})) as sim:
        settings = env(
            database_url=pg_db,
            acedata_base_url=sim.url,
            ratelimit_backend="off",
            requeue_after_s="0.2",
        )
        upgrade(settings.database_url)
        yield Stack(settings, manifest, state, sim.url)


Publish = Callable[[list[int]], None]
