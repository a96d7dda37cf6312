"""The machinery bench/quota.py and bench/backfill.py share: services, workers, a batch run.

Both benchmarks run the same batch twice on fresh Postgres databases with N real
``idbatch worker`` processes on Redis plus ``idbatch beat``: once with the shared Redis
limiter (``mode="limiter"``), once with the naive baseline (``mode="baseline"``: limiter
off, Celery's per-process ``rate_limit`` of Q/N). They differ only in what they report,
so everything up to "the batch ran, here are its rows and the workers' CPU" lives here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from statistics import quantiles
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import PG_ADMIN, PII_KEY, free_port, fresh_database  # noqa: E402

REDIS = os.environ.get("IDBATCH_BENCH_REDIS", "redis://127.0.0.1:6379")
SIM_TOKEN = "sim-acedata-token"  # noqa: S105 - the simulator's local test credential
TENCENT_ID, TENCENT_KEY = "sim-tencent-secret-id", "sim-tencent-secret-key"
ALIYUN_APPCODE = "sim-aliyun-appcode"


@dataclass(frozen=True)
class Bench:
    """One provider as the benchmarks drive it."""

    protocol: str  # the simulator's quota key
    account: str  # the simulator's account key in /_sim/stats
    sides: int  # billable calls per card: FRONT and BACK are two calls for the OCR vendors
    default_quota: float


PROVIDERS = {
    "acedata": Bench("acedata", f"acedata:{SIM_TOKEN}", 1, 100.0),
    "tencent_faceid": Bench("faceid", f"faceid:{TENCENT_ID}", 1, 100.0),
    "tencent_ocr": Bench("ocr", f"ocr:{TENCENT_ID}", 2, 20.0),
    # The vendor documents no rate; 50/s is the figure the benchmark configures on both sides.
    "aliyun_market": Bench("aliyun", f"aliyun:{ALIYUN_APPCODE}", 2, 50.0),
}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags both benchmarks take (same names, same meaning)."""
    parser.add_argument(
        "--quota", type=float, default=0.0, help="provider quota, calls/s (default: per provider)"
    )
    parser.add_argument("--provider", choices=sorted(PROVIDERS), default="acedata")
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=24, help="threads per worker process")
    parser.add_argument("--latency-ms", type=float, default=300.0, help="median provider latency")
    parser.add_argument("--latency-sigma", type=float, default=0.3, help="log-normal spread of the latency")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of calls answered 5xx")
    parser.add_argument("--headroom", type=float, default=0.02, help="limiter runs at quota * (1 - headroom)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the Celery rate_limit baseline")
    parser.add_argument(
        "--verify-group", type=int, default=8, help="jobs per verify_many message (IDBATCH_VERIFY_GROUP)"
    )
    parser.add_argument("--logs", type=Path, help="keep each worker's stderr in this folder")
    parser.add_argument("--redis-url", default=f"{REDIS}/{uuid.uuid4().int % 15 + 1}")


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


def write_manifest(out: Path, jobs: int, *, sides: int) -> Path:
    """Byte-distinct copies of a few enrolled cards, with a back image for two-sided vendors."""
    from simulator.samples import MANIFEST_COLUMNS, generate_sample, write_copies_manifest

    if sides == 1:
        return write_copies_manifest(out, jobs, sample=20, seed=7)
    rows = [r for r in generate_sample(out, 20, seed=7, defects=False) if r.expect == "passed"]
    lines = [",".join(MANIFEST_COLUMNS)]
    for i in range(jobs):
        values = dict(rows[i % len(rows)].values, external_ref=f"COPY-{i:07d}")
        for column in ("front_image", "back_image"):
            image = f"images/copy-{i:07d}-{column[:-6]}.jpg"
            (out / image).write_bytes((out / values[column]).read_bytes() + f"copy {i}".encode())
            values[column] = image
        lines.append(",".join(values[c] for c in MANIFEST_COLUMNS))
    path = out / "copies.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def services(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[str, str]]:
    """The simulator (quota, latency, faults) and the image gateway; yields their URLs."""
    bench = PROVIDERS[args.provider]
    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IDBATCH_")},
        "PYTHONPATH": str(ROOT),
        "IDBATCH_GATEWAY_SECRET": args.gateway_secret,
        "IDBATCH_DATA_DIR": str(tmp / "svc"),
        "IDBATCH_IMAGE_ROOTS": json.dumps([str(tmp)]),  # the gateway serves the sample's images only
    }
    sim_port, gw_port = free_port(), free_port()
    sim_cmd = idbatch(
        "simulator",
        "--port",
        str(sim_port),
        "--registry",
        str(tmp / "registry.jsonl"),
        "--quota",
        f"{bench.protocol}={args.quota}",
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
        yield sim_url, gw_url


def worker_env(
    args: argparse.Namespace, mode: str, db_url: str, data: Path, sim_url: str, gw_url: str
) -> dict[str, str]:
    run_id = uuid.uuid4().hex[:8]
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("IDBATCH_")},
        "PYTHONPATH": str(ROOT),
        "IDBATCH_DATA_DIR": str(data / f"data-{run_id}"),
        "IDBATCH_DATABASE_URL": db_url,
        "IDBATCH_BROKER_URL": args.redis_url,
        "IDBATCH_QUEUE": f"idbatch.qbench.{run_id}",
        "IDBATCH_PII_KEY": PII_KEY,
        "IDBATCH_ACEDATA_BASE_URL": sim_url,
        "IDBATCH_ACEDATA_TOKEN": SIM_TOKEN,
        "IDBATCH_FACEID_BASE_URL": f"{sim_url}/tencent/faceid",
        "IDBATCH_OCR_BASE_URL": f"{sim_url}/tencent/ocr",
        "IDBATCH_TENCENT_SECRET_ID": TENCENT_ID,
        "IDBATCH_TENCENT_SECRET_KEY": TENCENT_KEY,
        "IDBATCH_TENCENT_HANDOFF": "inline",
        "IDBATCH_ALIYUN_BASE_URL": sim_url,
        "IDBATCH_ALIYUN_APPCODE": ALIYUN_APPCODE,
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
        # The baseline's Celery rate_limit counts tasks: a group of k jobs per task would
        # let it run k times over its Q/N, so the naive baseline keeps one task per job.
        "IDBATCH_VERIFY_GROUP": str(args.verify_group if mode == "limiter" else 1),
    }


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


@dataclass
class Run:
    """What one mode's batch did: its id, the workers' CPU, the wall clock around it."""

    batch_id: int
    cpu_s: float
    submit_started: float  # time.time() when submit_path was called
    submitted: float  # time.time() when it returned
    counts: dict[str, int]
    limiter_events: dict[str, int] = field(default_factory=dict)
    sim_stats: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, Any] = field(default_factory=dict)


def check_connections(workers: int, concurrency: int) -> None:
    """Refuse to start when Postgres cannot serve every worker's pool at once.

    A worker process opens up to concurrency + 4 connections (db.session). Beyond
    ``max_connections`` the workers' transactions fail and are retried for as long as it
    lasts: a run then measures connection refusals (stalls, extra attempt rows, jobs
    stuck behind their leases), not the limiter. Seen here: 4 × 24 threads against the
    default 100 turned a 2-minute OCR run into a stall at 1.1 cores of retrying workers.
    """
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
        in_use = conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
    limit, used = int(row[0]) if row else 0, int(in_use[0]) if in_use else 0
    needed = workers * (concurrency + 4) + 10  # + the bench's own, the beat, the sweeper
    if limit - used < needed:
        print(
            f"warning: Postgres has {limit - used} connections free, the workers may need {needed}",
            file=sys.stderr,
        )
    if limit < needed:
        raise SystemExit(
            f"Postgres max_connections is {limit} with {used} in use; {workers} workers x "
            f"{concurrency} threads need about {needed}. Raise it (ALTER SYSTEM SET max_connections"
            " = 400, then restart Postgres) or pass fewer --workers/--concurrency."
        )


def run_batch(
    mode: str, args: argparse.Namespace, manifest: Path, sim_url: str, gw_url: str, budget_s: float
) -> Run:
    """Run ``manifest`` to the last terminal state (or ``budget_s``) with N workers in ``mode``."""
    from app.embedded import apply_env, current_app
    from db.migrate import upgrade
    from db.reports import status_counts
    from db.session import session_scope
    from idbatch.domain import TERMINAL_STATUSES, JobStatus
    from producers.submit import submit_path

    httpx.post(f"{sim_url}/_sim/reset", timeout=5).raise_for_status()
    check_connections(args.workers, args.concurrency)
    with fresh_database("idbatch_qbench") as db_url:
        env = worker_env(args, mode, db_url, manifest.parent, sim_url, gw_url)
        os.environ.update(env)
        settings = apply_env({})
        upgrade(settings.database_url)
        if mode == "limiter":
            worker_cmd = idbatch("worker", "--concurrency", str(args.concurrency), "--loglevel", "WARNING")
        else:
            rate = args.quota / args.workers
            worker_cmd = [sys.executable, __file__, f"{rate:.4f}/s"]
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
        counts: dict[str, int] = {}
        try:
            current_app(settings)
            wait_ready(settings, len(workers), workers)
            started = time.time()
            result = submit_path(manifest, settings=settings, provider=args.provider)
            submitted = time.time()
            deadline = time.monotonic() + budget_s
            while time.monotonic() < deadline:
                with session_scope() as session:
                    counts = status_counts(session, result.batch_id)
                if counts and all(JobStatus(s) in TERMINAL_STATUSES for s in counts):
                    break
                if any(w.poll() is not None for w in workers):
                    raise RuntimeError(f"{mode}: a worker died")
                time.sleep(0.5)
        finally:
            cpu_s = stop_and_measure(workers)
            beat.terminate()
            beat.wait(10)
        run = Run(result.batch_id, cpu_s, started, submitted, counts)
        run.rows = rows(result.batch_id)
        if mode == "limiter":
            import redis

            from workers.ratelimit import RedisLimiter

            limiter = RedisLimiter(redis.Redis.from_url(args.redis_url), env["IDBATCH_RATELIMIT_PREFIX"])
            run.limiter_events = limiter.events(f"{args.provider}:default")
    stats = httpx.get(f"{sim_url}/_sim/stats", timeout=5).json()["accounts"]
    run.sim_stats = stats.get(PROVIDERS[args.provider].account, {})
    return run


def wait_ready(
    settings: Any, count: int, workers: list[subprocess.Popen[bytes]], timeout_s: float = 90
) -> None:
    """Block until ``count`` workers answer a control ping.

    A backfill meets a fleet that is already running: the clock starts at submit, not at
    interpreter start-up, which on a loaded 2-core box takes seconds per process.
    """
    from dispatch.app import create_celery

    app = create_celery(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if any(w.poll() is not None for w in workers):
                raise RuntimeError("a worker died while starting")
            if len(app.control.ping(timeout=1.0) or []) >= count:
                return
        raise RuntimeError(f"{count} workers did not come up in {timeout_s:g} s")
    finally:
        app.close()


def rows(batch_id: int) -> dict[str, Any]:
    """The batch's attempts (start, billable, job, number) and jobs (finish, first call)."""
    from sqlalchemy import func, select

    from db.models import Attempt, Job
    from db.session import session_scope

    with session_scope() as session:
        calls = session.execute(
            select(Attempt.started_at, Attempt.billable, Attempt.job_id, Attempt.number)
            .join(Job, Job.id == Attempt.job_id)
            .where(Job.batch_id == batch_id)
        ).all()
        jobs = session.execute(
            select(Job.id, Job.finished_at, func.min(Attempt.started_at))
            .join(Attempt, Attempt.job_id == Job.id, isouter=True)
            .where(Job.batch_id == batch_id)
            .group_by(Job.id, Job.finished_at)
        ).all()
    return {"calls": calls, "jobs": jobs}


def terminal_count(counts: dict[str, int]) -> int:
    from idbatch.domain import TERMINAL_STATUSES, JobStatus

    return sum(n for s, n in counts.items() if JobStatus(s) in TERMINAL_STATUSES)


def log_file(args: argparse.Namespace, mode: str, index: int) -> Any:
    """Where a worker's stderr goes: a file under ``--logs``, or nowhere."""
    if args.logs is None:
        return subprocess.DEVNULL
    args.logs.mkdir(parents=True, exist_ok=True)
    return (args.logs / f"{mode}-worker{index}.log").open("ab")


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


if __name__ == "__main__":
    celery_rate_limit_worker(sys.argv[1])
