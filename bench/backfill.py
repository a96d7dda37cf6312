"""A backfill at the bound: N cards submitted and run to the last terminal state at quota Q.

The quota is the physical limit of a backfill: N cards of a provider that bills S calls
per card (S = 2 for the OCR vendors, FRONT and BACK) cannot finish before
``bound_s = N × S / Q``. This benchmark submits N cards and waits for the last one to
reach a terminal state, and prints:

- ``wall_s``: from the call to ``submit_path`` to the last job's ``finished_at`` (ingest
  included: a backfill is not done before it is read);
- ``run_s``: from the first provider call to the last terminal state (``ingest_s`` is
  the submit call alone);
- ``bound_s`` = N × sides / Q and ``ratio`` = wall_s / bound_s (``run_ratio`` for run_s);
- the same figures with ``--fault-rate`` (default 0.2: a fifth of the calls answered 5xx,
  retried through Postgres and the sweeper): a failed call uses quota and bills nothing,
  so the bound with faults is ``N × S / (Q × (1 − f))`` (``bound_with_faults_s``);
- beside each, the same run with Celery's per-worker ``rate_limit`` of Q/W and the
  shared limiter off. That baseline crawls (docs/throughput.md); it gets a time budget of
  ``--baseline-budget`` × bound and reports how far it got and ``projected_wall_s``
  (elapsed × N / finished) instead of running for half an hour.

    python bench/backfill.py --jobs 20000 --quota 100 --provider tencent_faceid
    python bench/backfill.py --jobs 300 --quota 50 --no-baseline --fault-rates 0   # CI size

The machinery (services, workers, a run) is bench/harness.py, shared with bench/quota.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import PROVIDERS, Run, add_common_arguments, run_batch, services, terminal_count, write_manifest


def figures(run: Run, args: argparse.Namespace, fault_rate: float, budget_s: float) -> dict[str, Any]:
    sides = PROVIDERS[args.provider].sides
    bound = args.jobs * sides / args.quota
    jobs = run.rows["jobs"]
    lasts = [f.timestamp() for _, f, _ in jobs if f is not None]
    firsts = [s.timestamp() for _, _, s in jobs if s is not None]
    finished = terminal_count(run.counts)
    done = finished == args.jobs
    end = max(lasts) if lasts else time.time()
    wall = end - run.submit_started
    run_s = end - min(firsts) if firsts else 0.0
    stats = run.sim_stats
    billed_per_card = Counter(c.job_id for c in run.rows["calls"] if c.billable)
    out: dict[str, Any] = {
        "jobs": args.jobs,
        "quota_rps": args.quota,
        "sides_per_card": sides,
        "fault_rate_5xx": fault_rate,
        "all_terminal": done,
        "jobs_finished": finished,
        "counts": run.counts,
        "wall_s": round(wall, 1),
        "ingest_s": round(run.submitted - run.submit_started, 1),
        "run_s": round(run_s, 1),
        "bound_s": round(bound, 1),
        "ratio": round(wall / bound, 4),
        "run_ratio": round(run_s / bound, 4),
        "over_quota_calls": stats.get("over_quota", 0),
        "simulator_calls": stats.get("calls", 0),
        "simulator_billable": stats.get("billable", 0),
        # what our record says was billed, and the most billed calls any one card made
        "recorded_billable": sum(1 for c in run.rows["calls"] if c.billable),
        "max_billable_per_card": max(billed_per_card.values(), default=0),
        "injected_faults": stats.get("injected", 0),
        "cpu_ms_per_job": round(1000 * run.cpu_s / max(1, finished), 2),
        "limiter_events": run.limiter_events,
    }
    if fault_rate:
        with_faults = bound / (1 - fault_rate)
        out["bound_with_faults_s"] = round(with_faults, 1)
        out["ratio_with_faults_bound"] = round(wall / with_faults, 4)
    if not done:
        # a stopped run has no wall time to the last terminal state: only a projection
        out["partial_ratio"], out["ratio"], out["run_ratio"] = out["ratio"], None, None
        out["stopped_after_s"] = round(budget_s, 1)
        out["projected_wall_s"] = round(wall * args.jobs / max(1, finished), 1)
        out["projected_ratio"] = round(out["projected_wall_s"] / bound, 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser)
    parser.add_argument("--jobs", type=int, default=20000, help="cards in the backfill")
    parser.add_argument(
        "--fault-rates", default="0,0.2", help="comma-separated 5xx rates to run (each a separate backfill)"
    )
    parser.add_argument(
        "--baseline-budget", type=float, default=0.5, help="baseline time budget, in multiples of bound_s"
    )
    args = parser.parse_args()
    bench = PROVIDERS[args.provider]
    args.quota = args.quota or bench.default_quota
    args.gateway_secret = uuid.uuid4().hex
    rates = [float(r) for r in args.fault_rates.split(",")]
    bound = args.jobs * bench.sides / args.quota

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="idbatch-backfill-") as tmp:
        manifest = write_manifest(Path(tmp), args.jobs, sides=bench.sides)
        for rate in rates:
            args.fault_rate = rate
            with services(args, Path(tmp)) as (sim_url, gw_url):
                # Generous for the limiter (it should end near the bound); a stop, not a target.
                budget = 3 * bound / (1 - rate) + 60
                run = run_batch("limiter", args, manifest, sim_url, gw_url, budget)
                entry = {"limiter": figures(run, args, rate, budget)}
                if not args.no_baseline:
                    budget = max(60.0, args.baseline_budget * bound)
                    run = run_batch("baseline", args, manifest, sim_url, gw_url, budget)
                    entry["baseline"] = figures(run, args, rate, budget)
                    entry["baseline"]["method"] = (
                        f"celery rate_limit {args.quota / args.workers:g}/s per worker process"
                    )
                results.append(entry)
    out = {
        "config": {
            "provider": args.provider,
            "jobs": args.jobs,
            "quota_rps": args.quota,
            "workers": args.workers,
            "threads_per_worker": args.concurrency,
            "latency_ms_median": args.latency_ms,
            "latency_sigma": args.latency_sigma,
            "headroom": args.headroom,
            "verify_group": args.verify_group,
        },
        "runs": results,
    }
    sys.stdout.write(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
