"""bench/metrics_overhead.py, CI-sized: it runs, prints its JSON and counts every job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_overhead_bench_ci_sized() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/metrics_overhead.py", "--jobs", "2000", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["jobs_counted"] == result["jobs_expected"] == 4000
    assert result["ours_cpu_us_per_job"] > 0 and result["naive_cpu_us_per_job"] > 0
