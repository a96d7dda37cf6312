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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from statistics import quantiles
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import PII_KEY, free_port, fresh_database  # noqa: E402

REDIS = os.environ.get("IDBATCH_BENCH_REDIS", "redis://127.0.0.1:6379")
SIM_TOKEN = "sim-acedata-token"  # noqa: S105 - the simulator's local test credential
TENCENT_ID, TENCENT_KEY = "sim-tencent-secret-id", "sim-tencent-secret-key"
# Per provider: the simulator's protocol name (its quota key) and its account key.
PROVIDERS = {
    "acedata": ("acedata", f"acedata:{SIM_TOKEN}"),
    "tencent_faceid": ("faceid", f"faceid:{TENCENT_ID}"),
}


def log_file(args: argparse.Namespace, mode: str, index: int) -> Any:
    """Where a worker's stderr goes: a file under ``--logs``, or nowhere."""
    if args.logs is None:
        return subprocess.DEVNULL
    args.logs.mkdir(parents=True, exist_ok=True)
    return (args.logs / f"{mode}-worker{index}.log").open("ab")


def idbatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def service(cmd: list[str], env: dict[str, str], health: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(health)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def stop_and_measure(procs: list[subprocess.Popen[bytes]]) -> float:
    """Warm-shutdown the workers and return their total user+system CPU seconds."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    cpu = 0.0
    deadline = time.monotonic() + 60
    for p in procs:
        while True:
            pid, _, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                cpu += usage.ru_utime + usage.ru_stime
                p.returncode = 0
                break
            if time.monotonic() > deadline:
                p.kill()
                deadline = time.monotonic() + 10
            time.sleep(0.1)
    return cpu


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return quantiles(values, n=100, method="inclusive")[q - 1]


def measure(batch_id: int) -> dict[str, Any]:
    from sqlalchemy import func, select

    from db.models import Attempt, Job
    from db.reports import status_counts
    from db.session import session_scope

    with session_scope() as session:
        counts = status_counts(session, batch_id)
        calls = session.execute(
            select(Attempt.started_at, Attempt.billable, Attempt.job_id, Attempt.number)
            .join(Job, Job.id == Attempt.job_id)
            .where(Job.batch_id == batch_id)
        ).all()
        jobs = session.execute(
            select(Job.id, Job.finished_at, func.min(Attempt.started_at))
            .join(Attempt, Attempt.job_id == Job.id)
            .where(Job.batch_id == batch_id)
            .group_by(Job.id, Job.finished_at)
        ).all()
    starts = sorted(c.started_at.timestamp() for c in calls)
    lo, hi = pct(starts, 10), pct(starts, 90)
    steady = max(hi - lo, 1e-9)
    billable_steady = sum(1 for c in calls if c.billable and lo <= c.started_at.timestamp() <= hi)
    calls_steady = sum(1 for c in calls if lo <= c.started_at.timestamp() <= hi)
    durations = [(f - s).total_seconds() for _, f, s in jobs if f is not None]
    tries = {(c.job_id, c.number) for c in calls}
    return {
        "counts": counts,
        "calls": len(calls),
        "billable_calls": sum(1 for c in calls if c.billable),
        "achieved_rps": billable_steady / steady,
        "calls_rps": calls_steady / steady,
        "steady_s": steady,
        "retries": len(tries) - len({c.job_id for c in calls}),
        "p50_job_s": pct(durations, 50),
        "p99_job_s": pct(durations, 99),
        "makespan_s": (max(f for _, f, _ in jobs if f) - min(s for _, _, s in jobs)).total_seconds()
        if jobs
        else 0.0,
    }


def run_mode(
    mode: str, args: argparse.Namespace, manifest: Path, sim_url: str, gw_url: str
) -> dict[str, Any]:
    from app.embedded import apply_env, current_app
    from db.migrate import upgrade
    from db.reports import status_counts
    from db.session import session_scope
    from idbatch.domain import TERMINAL_STATUSES, JobStatus
    from producers.submit import submit_path

    httpx.post(f"{sim_url}/_sim/reset", timeout=5).raise_for_status()
    with fresh_database("idbatch_qbench") as db_url:
        run_id = uuid.uuid4().hex[:8]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IDBATCH_")},
            "PYTHONPATH": str(ROOT),
            "IDBATCH_DATA_DIR": str(manifest.parent / f"data-{run_id}"),
            "IDBATCH_DATABASE_URL": db_url,
            "IDBATCH_BROKER_URL": args.redis_url,
            "IDBATCH_QUEUE": f"idbatch.qbench.{run_id}",
            "IDBATCH_PII_KEY": PII_KEY,
            "IDBATCH_ACEDATA_BASE_URL": sim_url,
            "IDBATCH_ACEDATA_TOKEN": SIM_TOKEN,
            "IDBATCH_FACEID_BASE_URL": f"{sim_url}/tencent/faceid",
            "IDBATCH_TENCENT_SECRET_ID": TENCENT_ID,
            "IDBATCH_TENCENT_SECRET_KEY": TENCENT_KEY,
            "IDBATCH_TENCENT_HANDOFF": "inline",
            "IDBATCH_GATEWAY_URL": gw_url,
            "IDBATCH_GATEWAY_SECRET": args.gateway_secret,
            "IDBATCH_WORKER_CONCURRENCY": str(args.concurrency),
            "IDBATCH_BACKOFF_BASE_S": "0.5",
            "IDBATCH_BACKOFF_CAP_S": "10",
            "IDBATCH_RATE_LIMITS": json.dumps({args.provider: args.quota}),
            "IDBATCH_RATE_HEADROOM": str(args.headroom),
            "IDBATCH_RATELIMIT_PREFIX": f"idbatch:qbench:{run_id}",
            "IDBATCH_RATELIMIT_BACKEND": "redis" if mode == "limiter" else "off",
            "IDBATCH_LOG_LEVEL": "WARNING",
        }
        os.environ.update(env)
        settings = apply_env({})
        upgrade(settings.database_url)
        if mode == "limiter":
            worker_cmd = idbatch("worker", "--concurrency", str(args.concurrency), "--loglevel", "WARNING")
        else:
            rate = args.quota / args.workers
            worker_cmd = [sys.executable, __file__, "--celery-rate-limit-worker", f"{rate:.4f}/s"]
        workers = [
            subprocess.Popen(worker_cmd, env=env, stdout=subprocess.DEVNULL, stderr=log_file(args, mode, i))
            for i in range(args.workers)
        ]
        beat = subprocess.Popen(
            idbatch("beat", "--loglevel", "WARNING"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            current_app(settings)
            result = submit_path(manifest, settings=settings, provider=args.provider)
            # The baseline may crawl; its rate is measured over what it did in the time given.
            budget = 4 * args.jobs / args.quota if mode == "limiter" else 2 * args.jobs / args.quota
            deadline = time.monotonic() + max(120.0, budget)
            while time.monotonic() < deadline:
                with session_scope() as session:
                    counts = status_counts(session, result.batch_id)
                if counts and all(JobStatus(s) in TERMINAL_STATUSES for s in counts):
                    break
                if any(w.poll() is not None for w in workers):
                    raise RuntimeError(f"{mode}: a worker died")
                time.sleep(1.0)
        finally:
            cpu_s = stop_and_measure(workers)
            beat.terminate()
            beat.wait(10)
        figures = measure(result.batch_id)
        events: dict[str, int] = {}
        if mode == "limiter":
            import redis

            from workers.ratelimit import RedisLimiter

            limiter = RedisLimiter(redis.Redis.from_url(args.redis_url), env["IDBATCH_RATELIMIT_PREFIX"])
            events = limiter.events(f"{args.provider}:default")
    account = PROVIDERS[args.provider][1]
    stats = httpx.get(f"{sim_url}/_sim/stats", timeout=5).json()["accounts"].get(account, {})
    terminal = all(JobStatus(s) in TERMINAL_STATUSES for s in figures["counts"])
    finished = sum(n for s, n in figures["counts"].items() if JobStatus(s) in TERMINAL_STATUSES)
    return {
        "quota_rps": args.quota,
        "achieved_rps": round(figures["achieved_rps"], 2),
        "utilization": round(figures["achieved_rps"] / args.quota, 4),
        "calls_rps": round(figures["calls_rps"], 2),
        "over_quota_calls": stats.get("over_quota", 0),
        "retries": figures["retries"],
        "p50_job_s": round(figures["p50_job_s"], 3),
        "p99_job_s": round(figures["p99_job_s"], 3),
        "cpu_ms_per_job": round(1000 * cpu_s / max(1, finished), 2),
        "jobs_finished": finished,
        "jobs": args.jobs,
        "all_terminal": terminal and sum(figures["counts"].values()) == args.jobs,
        "counts": figures["counts"],
        "simulator_calls": stats.get("calls", 0),
        "simulator_billable": stats.get("billable", 0),
        "injected_faults": stats.get("injected", 0),
        "limiter_events": events,
        "steady_s": round(figures["steady_s"], 1),
        "makespan_s": round(figures["makespan_s"], 1),
    }


def celery_rate_limit_worker(rate: str) -> None:
    """The baseline worker: the same app and pool, paced only by Celery's per-process rate_limit."""
    from dispatch.app import sweep_queue
    from idbatch.settings import get_settings
    from workers.celery_app import app

    settings = get_settings()
    app.conf.task_annotations = {"idbatch.verify": {"rate_limit": rate}}
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={settings.worker_concurrency}",
            f"--queues={settings.queue},{sweep_queue(settings)}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quota", type=float, default=100.0, help="provider quota, calls/s")
    parser.add_argument(
        "--provider",
        choices=sorted(PROVIDERS),
        default="acedata",
        help="acedata fetches each image from the image gateway (URL hand-off); tencent_faceid "
        "receives it inline (base64), as a 100/s FaceID account would",
    )
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=24, help="threads per worker process")
    parser.add_argument("--jobs", type=int, default=0, help="jobs per run (default: 60 s at the quota)")
    parser.add_argument("--latency-ms", type=float, default=300.0, help="median provider latency")
    parser.add_argument("--latency-sigma", type=float, default=0.3, help="log-normal spread of the latency")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of calls answered 5xx")
    parser.add_argument("--headroom", type=float, default=0.02, help="limiter runs at quota * (1 - headroom)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the Celery rate_limit baseline")
    parser.add_argument("--logs", type=Path, help="keep each worker's stderr in this folder")
    parser.add_argument("--redis-url", default=f"{REDIS}/{random.randint(1, 15)}")
    parser.add_argument("--celery-rate-limit-worker", metavar="RATE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.celery_rate_limit_worker:
        celery_rate_limit_worker(args.celery_rate_limit_worker)
        return
    args.jobs = args.jobs or int(60 * args.quota)
    args.gateway_secret = uuid.uuid4().hex

    with tempfile.TemporaryDirectory(prefix="idbatch-qbench-") as tmp:
        from simulator.samples import write_copies_manifest

        manifest = write_copies_manifest(Path(tmp), args.jobs, sample=20, seed=7)
        base_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IDBATCH_")},
            "PYTHONPATH": str(ROOT),
            "IDBATCH_GATEWAY_SECRET": args.gateway_secret,
            "IDBATCH_DATA_DIR": str(Path(tmp) / "svc"),
            "IDBATCH_IMAGE_ROOTS": json.dumps([tmp]),  # the gateway serves the sample's images only
        }
        sim_port, gw_port = free_port(), free_port()
        sim_cmd = idbatch(
            "simulator",
            "--port",
            str(sim_port),
            "--registry",
            str(Path(tmp) / "registry.jsonl"),
            "--quota",
            f"{PROVIDERS[args.provider][0]}={args.quota}",
            "--fault",
            f"latency_ms={args.latency_ms}",
            "--fault",
            f"latency_sigma={args.latency_sigma}",
            "--fault",
            f"rate_5xx={args.fault_rate}",
        )
        sim_url, gw_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
        with (
            service(sim_cmd, base_env, f"{sim_url}/_sim/health"),
            service(idbatch("gateway", "--port", str(gw_port)), base_env, f"{gw_url}/"),
        ):
            out = run_mode("limiter", args, manifest, sim_url, gw_url)
            out["config"] = {
                "provider": args.provider,
                "workers": args.workers,
                "threads_per_worker": args.concurrency,
                "latency_ms_median": args.latency_ms,
                "latency_sigma": args.latency_sigma,
                "fault_rate_5xx": args.fault_rate,
                "headroom": args.headroom,
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
