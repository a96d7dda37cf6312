"""bench/api.py at CI size: it runs, every submission is accepted, and it prints its fields."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_bench_api_ci_sized() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "bench/api.py",
            "--rate",
            "40",
            "--seconds",
            "2",
            "--batches",
            "2",
            "--batch-size",
            "200",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in (
        "single_submissions_per_s",
        "single_p50_ms",
        "single_p99_ms",
        "batch_cards_per_s",
        "csv_cards_per_s",
    ):
        assert result[name] > 0, result
    assert result["single_status_codes"] == {"202": 80}, result
    assert result["batch_cards"] == 400 and result["csv_cards"] == 400, result
