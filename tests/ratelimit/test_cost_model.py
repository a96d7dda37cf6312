"""bench/cost_model.py: the model's terms behave as docs/throughput.md says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _model(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "bench/cost_model.py", *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_ten_accounts_ten_million_cards() -> None:
    m = _model()
    assert m["bound_s"] == 10_000.0  # 10M cards / (10 x 100/s)
    assert 1.0204 <= m["ratio"] < 1.03  # the 2 % headroom is the floor of the ratio
    assert m["redis_limiter_ops_per_s"] == 1960.0  # acquire + release per granted call


def test_two_sided_cards_double_the_bound_and_faults_raise_the_ratio() -> None:
    one, two = _model("--cards", "100000"), _model("--cards", "100000", "--sides", "2")
    assert two["bound_s"] == 2 * one["bound_s"]
    faulty = _model("--cards", "100000", "--fault-rate", "0.2")
    assert faulty["ratio_limit_as_n_grows"] == round(1 / (0.98 * 0.8), 4)
    assert faulty["attempt_rows"] == 125_000


def test_worker_cpu_grows_with_the_rate_not_with_n() -> None:
    small, big = _model("--cards", "100000"), _model("--cards", "10000000")
    assert small["worker_cpu_cores"] == big["worker_cpu_cores"]
    cheap = _model("--cpu-ms-per-job", "3")
    assert cheap["worker_cpu_cores"] < small["worker_cpu_cores"] / 2
