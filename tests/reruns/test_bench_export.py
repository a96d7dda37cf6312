"""bench/export.py at CI size: it runs, exports every job in both formats, prints its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_export_bench_small() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/export.py", "--jobs", "3000", "--baseline-jobs", "200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"csv_rows_per_s", "parquet_rows_per_s", "peak_rss_mb", "naive_rows_per_s"} <= set(out)
    variants = out["variants"]
    assert variants["csv"]["rows"] == variants["parquet"]["rows"] == 3000
    assert variants["naive"]["rows"] == 200
    assert all(v["bytes"] > 0 and v["peak_rss_mb"] > 0 for v in variants.values())
