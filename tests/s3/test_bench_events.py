"""bench/events.py, CI-sized: both variants run to the end and every card is one two-sided job.

Rates are printed, never asserted (the box is shared); what must hold is the accounting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_bench_events_ci_sized_run_pairs_every_card() -> None:
    run = subprocess.run(
        [sys.executable, "events.py", "--cards", "25", "--baseline-cards", "5", "--concurrency", "2"],
        cwd=ROOT / "bench",
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]  # a failure says why (the traceback)
    out = run.stdout
    report = json.loads(out[out.index("{\n") :])
    assert report["listener"]["all_paired"] and report["baseline_one_at_a_time"]["all_paired"]
    assert report["listener_reads_claims"]["all_paired"]
    assert report["listener"]["claims_read_by"] == "worker"
    assert report["listener_reads_claims"]["claims_read_by"] == "listener"
    assert report["listener"]["jobs"] == 25 and report["listener"]["events"] == 50
    assert report["moto"] == "bench/moto_fast.py"  # the patched server answered everything
    assert (
        report["listener"]["moto_cpu_ms_per_event"] > 0
        and report["listener"]["postgres_cpu_ms_per_event"] >= 0
    )
    assert report["events_per_s"] > 0 and report["baseline_events_per_s"] > 0 and "speedup" in report
