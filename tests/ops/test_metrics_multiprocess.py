"""Multi-process mode: with PROMETHEUS_MULTIPROC_DIR, processes' counters add up on one
exposer, and a dead process's in-flight gauge drops out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.multiprocess import MultiProcessCollector

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
from idbatch import metrics
for _ in range(int(sys.argv[1])):
    metrics.job_outcome("passed", "backfill")
metrics.observe_calls("acedata", "default", [type("C", (), {"billable": True, "latency_ms": 120.0})()])
metrics.in_flight("acedata").inc()
print(__import__("os").getpid())
"""


def _child(n: int, folder: Path) -> int:
    """Run a process that counts into ``folder``; its pid."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(n)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout.strip())


def _values(folder: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    return {s.name: s.value for m in registry.collect() for s in m.samples if not s.name.endswith("_bucket")}


def test_counters_of_several_processes_add_up(tmp_path: Path) -> None:
    pids = [_child(3, tmp_path), _child(4, tmp_path)]
    values = _values(tmp_path)
    assert values["idbatch_job_outcomes_total"] == 7
    assert values["idbatch_billable_calls_total"] == 2
    assert values["idbatch_provider_call_seconds_count"] == 2
    assert values["idbatch_calls_in_flight"] == 2
    # a process marked dead (worker_process_shutdown) leaves the live sum; counters stay
    for pid in pids:
        multiprocess.mark_process_dead(pid, str(tmp_path))  # type: ignore[no-untyped-call]
    values = _values(tmp_path)
    assert values.get("idbatch_calls_in_flight", 0) == 0 and values["idbatch_job_outcomes_total"] == 7
