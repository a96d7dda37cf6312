"""Quota-exact throughput: N real workers against a provider with a strict quota.

Starts the simulator (quota Q, log-normal latency, optional injected 5xx faults) and the
image gateway as subprocesses, then runs the same batch twice on fresh Postgres
databases with N ``idbatch worker`` processes on Redis:

- ``limiter``: the shared Redis limiter of ``workers.ratelimit`` (quota Q, 2 % headroom);
- ``baseline``: no shared limiter, plain Celery ``rate_limit`` of Q/N per worker process
  (the naive approach: each process paces itself, the processes do not coordinate).

Prints one JSON object: the limiter's figures at the top level, the baseline's under
``"baseline"``. ``achieved_rps`` is billable calls per second over the steady part (the
middle 80 % of the calls by start time), ``utilization`` = achieved / quota,
``over_quota_calls`` is what the simulator refused as over the limit (``/_sim/stats``),
``p50_job_s``/``p99_job_s`` run from a job's first call to its terminal state, and
``cpu_ms_per_job`` is the workers' user+system CPU (from ``wait4``) per job that reached a
terminal state (a baseline stopped half-way is not made cheaper by its unstarted jobs).

    python bench/quota.py --quota 100 --workers 4 --jobs 6000 --latency-ms 300
    python bench/quota.py --fault-rate 0.2          # every job still ends terminal
    python bench/quota.py --provider tencent_ocr    # 20/s, FRONT and BACK are two calls
    python bench/quota.py --provider aliyun_market  # 50/s configured on both sides

The services, workers and the batch run live in bench/harness.py (shared with
bench/backfill.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    PROVIDERS,
    Run,
    add_common_arguments,
    pct,
    run_batch,
    services,
    terminal_count,
    write_manifest,
)


def measure(run: Run) -> dict[str, Any]:
    """Rates over the steady middle 80 % of the calls, job durations, makespan."""
    calls, jobs = run.rows["calls"], run.rows["jobs"]
    starts = sorted(c.started_at.timestamp() for c in calls)
    lo, hi = pct(starts, 10), pct(starts, 90)
    steady = max(hi - lo, 1e-9)
    billable_steady = sum(1 for c in calls if c.billable and lo <= c.started_at.timestamp() <= hi)
    calls_steady = sum(1 for c in calls if lo <= c.started_at.timestamp() <= hi)
    durations = [(f - s).total_seconds() for _, f, s in jobs if f is not None and s is not None]
    tries = {(c.job_id, c.number) for c in calls}
    firsts = [s for _, _, s in jobs if s is not None]
    lasts = [f for _, f, _ in jobs if f is not None]
    return {
        "achieved_rps": billable_steady / steady,
        "calls_rps": calls_steady / steady,
        "steady_s": steady,
        "retries": len(tries) - len({c.job_id for c in calls}),
        "p50_job_s": pct(durations, 50),
        "p99_job_s": pct(durations, 99),
        "makespan_s": (max(lasts) - min(firsts)).total_seconds() if lasts and firsts else 0.0,
    }


def run_mode(
    mode: str, args: argparse.Namespace, manifest: Path, sim_url: str, gw_url: str
) -> dict[str, Any]:
    calls = args.jobs * PROVIDERS[args.provider].sides
    # The baseline may crawl; its rate is measured over what it did in the time given.
    budget = (4 if mode == "limiter" else 2) * calls / args.quota
    run = run_batch(mode, args, manifest, sim_url, gw_url, max(120.0, budget))
    figures = measure(run)
    finished = terminal_count(run.counts)
    stats = run.sim_stats
    return {
        "quota_rps": args.quota,
        "achieved_rps": round(figures["achieved_rps"], 2),
        "utilization": round(figures["achieved_rps"] / args.quota, 4),
        "calls_rps": round(figures["calls_rps"], 2),
        "over_quota_calls": stats.get("over_quota", 0),
        "retries": figures["retries"],
        "p50_job_s": round(figures["p50_job_s"], 3),
        "p99_job_s": round(figures["p99_job_s"], 3),
        "cpu_ms_per_job": round(1000 * run.cpu_s / max(1, finished), 2),
        "jobs_finished": finished,
        "jobs": args.jobs,
        "all_terminal": finished == args.jobs,
        "counts": run.counts,
        "simulator_calls": stats.get("calls", 0),
        "simulator_billable": stats.get("billable", 0),
        "injected_faults": stats.get("injected", 0),
        "limiter_events": run.limiter_events,
        "steady_s": round(figures["steady_s"], 1),
        "makespan_s": round(figures["makespan_s"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser)
    parser.add_argument("--jobs", type=int, default=0, help="jobs per run (default: 60 s at the quota)")
    args = parser.parse_args()
    bench = PROVIDERS[args.provider]
    args.quota = args.quota or bench.default_quota
    args.jobs = args.jobs or int(60 * args.quota / bench.sides)
    args.gateway_secret = uuid.uuid4().hex

    with tempfile.TemporaryDirectory(prefix="idbatch-qbench-") as tmp:
        manifest = write_manifest(Path(tmp), args.jobs, sides=bench.sides)
        with services(args, Path(tmp)) as (sim_url, gw_url):
            out = run_mode("limiter", args, manifest, sim_url, gw_url)
            out["config"] = {
                "provider": args.provider,
                "sides_per_card": bench.sides,
                "workers": args.workers,
                "threads_per_worker": args.concurrency,
                "latency_ms_median": args.latency_ms,
                "latency_sigma": args.latency_sigma,
                "fault_rate_5xx": args.fault_rate,
                "headroom": args.headroom,
                "verify_group": args.verify_group,
                "limiter_ceiling_rps": round(args.quota * (1 - args.headroom), 2),
            }
            if not args.no_baseline:
                out["baseline"] = run_mode("baseline", args, manifest, sim_url, gw_url)
                out["baseline"]["method"] = (
                    f"celery rate_limit {args.quota / args.workers:g}/s per worker process"
                )
    sys.stdout.write(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
