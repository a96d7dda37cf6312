"""Chaos run: nothing lost, nothing billed twice, while workers, Redis and Postgres fail.

Runs a real batch (synthetic cards, the simulator with injected provider faults, the
image gateway) through real ``idbatch worker`` processes and one ``idbatch beat``, on a
*private* redis-server (own port, no persistence) and, by default, a *private* Postgres
cluster (``initdb`` in a temp dir, own port). During the run it SIGKILLs a worker
several times (restarting it), restarts Redis (everything queued is gone: it keeps
nothing on disk) and restarts Postgres once (``pg_ctl restart -m fast``: every
connection dies and the server is away for a moment). Private servers mean restarting
them disturbs nobody else on the machine. ``--postgres shared`` uses a database on the
shared cluster instead and only terminates its connections (``pg_terminate_backend``);
the JSON names the method used.

Then it resubmits the same manifest and counts the new billable calls: 0 for every card
that already had a paid answer (a card whose job failed, never answered, is asked again).
Prints one JSON object; exits 1 if an invariant does not hold:
``lost == 0``, ``duplicate_results == 0``,
``duplicate_billable_calls <= kills * worker concurrency``,
``resubmit_billable_calls_for_paid_cards == 0``.

    .venv/bin/python bench/chaos.py --jobs 2000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import PG_ADMIN, PII_KEY, free_port  # noqa: E402

from app.demo import SIM_TOKEN, provider_env  # noqa: E402
from idbatch.providers import KNOWN_PROVIDERS  # noqa: E402
from idbatch.servers import BackgroundServer  # noqa: E402
from simulator.cards import load_registry  # noqa: E402
from simulator.samples import generate_sample  # noqa: E402

TERMINAL = ("passed", "negative", "rejected", "failed", "cancelled")


class PrivateRedis:
    """A redis-server of our own, so restarting it disturbs nobody."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # no persistence: every message is lost, as in production
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivatePostgres:
    """A Postgres cluster of our own (initdb in a temp dir), so restarting it is harmless."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.datadir = workdir / "pgdata"
        self.log = workdir / "postgres.log"
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            raise RuntimeError("initdb not found under /usr/lib/postgresql")
        self.bindir = bins[-1].parent
        # initdb and postgres refuse to run as root: run them as the postgres user then.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        subprocess.run(
            [*self.as_user, *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def init(self) -> None:
        self.datadir.mkdir(parents=True)
        if self.as_user:
            shutil.chown(self.datadir.parent, "postgres")
            shutil.chown(self.datadir, "postgres")
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.datadir), "-A", "trust", "-U", "postgres", "--no-sync"
        )
        self.start()

    def _ctl(self, *argv: str) -> None:
        opts = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            opts,
            *argv,
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("-m", "fast", "restart")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("-m", "immediate", "stop")


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def wait_until(pred: Callable[[], bool], timeout_s: float, poll_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(poll_s)
    return pred()


def sim_totals(state: Any) -> dict[str, int]:
    """The simulator's counters summed over every account (a provider may bill several)."""
    totals: dict[str, int] = {}
    for account in state.stats_json()["accounts"].values():
        for key in ("billable", "duplicate_billable", "injected", "calls"):
            totals[key] = totals.get(key, 0) + int(account.get(key, 0))
    return totals


def run(args: argparse.Namespace) -> dict[str, Any]:
    from simulator.app import create_app as create_simulator
    from simulator.state import SimState

    tmp = Path(tempfile.mkdtemp(prefix="idbatch-chaos-"))
    db_name = f"idbatch_chaos_{uuid.uuid4().hex[:10]}"
    private_pg = PrivatePostgres(free_port(), tmp) if args.postgres == "private" else None
    if private_pg is not None:
        private_pg.init()
    pg_admin = private_pg.admin_url if private_pg is not None else PG_ADMIN
    sql(pg_admin, f'CREATE DATABASE "{db_name}"')
    pg_psycopg = pg_admin.rsplit("/", 1)[0] + f"/{db_name}"
    db_url = pg_psycopg.replace("postgresql://", "postgresql+psycopg://", 1)
    redis = PrivateRedis(args.redis_port or free_port(), tmp)
    redis.start()
    rows = generate_sample(tmp / "cards", args.jobs, seed=args.seed, defects=False)
    manifest = tmp / "cards" / "manifest.csv"

    state = SimState(registry=load_registry(tmp / "cards" / "registry.jsonl"), seed=args.seed)
    for protocol in ("acedata", "faceid", "ocr", "aliyun"):  # chaos, not quota, is measured here
        state.quotas[protocol] = 1e9
    half = args.fault_rate / 2
    state.faults.update(
        {"rate_5xx": half, "rate_429": half, "latency_ms": args.latency_ms, "latency_sigma": 0.3}
    )
    sim = BackgroundServer(create_simulator(state, acedata_tokens={SIM_TOKEN})).start()
    from idbatch.gateway import create_app as create_gateway

    gateway_secret = "chaos-gateway-secret"  # noqa: S105 - local only
    gateway = BackgroundServer(create_gateway(gateway_secret.encode(), [tmp])).start()

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IDBATCH_")},
        "IDBATCH_DATA_DIR": str(tmp / "data"),
        "IDBATCH_DATABASE_URL": db_url,
        "IDBATCH_BROKER_URL": redis.url,
        "IDBATCH_QUEUE": f"idbatch.chaos.{uuid.uuid4().hex[:6]}",
        "IDBATCH_PII_KEY": PII_KEY,
        **provider_env(args.provider, sim.url),
        "IDBATCH_RATE_LIMITS": "{}",
        "IDBATCH_GATEWAY_URL": gateway.url,
        "IDBATCH_GATEWAY_SECRET": gateway_secret,
        "IDBATCH_BACKOFF_BASE_S": "0.2",
        "IDBATCH_BACKOFF_CAP_S": "2",
        "IDBATCH_HTTP_TIMEOUT_S": "5",
        # A lease must outlast one call (timeout 5 s); short here so a killed worker's
        # jobs come back within seconds instead of the production five minutes.
        "IDBATCH_LEASE_S": "15",
        "IDBATCH_SWEEP_INTERVAL_S": "1",
        "IDBATCH_REQUEUE_AFTER_S": "5",
        "IDBATCH_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    from app.embedded import apply_env, current_app

    settings = apply_env({})
    from db.migrate import upgrade

    upgrade(db_url)
    idbatch = [sys.executable, "-m", "app.cli"]
    logs = tmp / "logs"
    logs.mkdir()

    def spawn(name: str, *argv: str) -> subprocess.Popen[bytes]:
        out = (logs / f"{name}.log").open("ab")
        # cwd = the checkout: importlib.resources cannot read package files through the
        # editable-install finder from elsewhere (workers/ratelimit.lua).
        return subprocess.Popen([*idbatch, *argv], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    workers = [
        spawn(f"worker{i}", "worker", f"--concurrency={args.concurrency}", "--loglevel=WARNING")
        for i in range(args.workers)
    ]
    beat = spawn("beat", "beat", "--loglevel=WARNING")

    def counts(batch_id: int) -> dict[str, int]:
        return dict(
            sql(pg_psycopg, "SELECT status, count(*) FROM job WHERE batch_id=%s GROUP BY 1", (batch_id,))
        )

    def terminal(batch_id: int) -> int:
        return sum(n for s, n in counts(batch_id).items() if s in TERMINAL)

    kills = redis_restarts = postgres_restarts = unplanned_exits = 0

    def supervise() -> int:
        """Restart a worker that exited on its own, as its supervisor (compose's restart
        policy, systemd) would; returns how many, since each one is a finding. Seen:
        kombu's Redis transport raising AttributeError while reconnecting after the
        Redis restart, which Celery treats as unrecoverable."""
        restarted = 0
        for i, proc in enumerate(workers):
            if proc.poll() is not None:
                restarted += 1
                workers[i] = spawn(
                    f"worker{i}", "worker", f"--concurrency={args.concurrency}", "--loglevel=WARNING"
                )
        return restarted

    rng = random.Random(args.seed)
    started = time.monotonic()
    try:
        current_app(settings)
        from producers.submit import submit_path

        batch = submit_path(manifest, settings=settings, provider=args.provider).batch_id
        # Chaos schedule by progress: kills spread over the run, Redis at 40 %, Postgres at 60 %.
        kill_at = sorted(rng.uniform(0.1, 0.8) for _ in range(args.kills))
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            done = terminal(batch)
            if done >= args.jobs:
                break
            progress = done / args.jobs
            unplanned_exits += supervise()
            if kill_at and progress >= kill_at[0]:
                kill_at.pop(0)
                i = rng.randrange(len(workers))
                workers[i].send_signal(signal.SIGKILL)
                workers[i].wait(10)
                kills += 1
                workers[i] = spawn(
                    f"worker{i}", "worker", f"--concurrency={args.concurrency}", "--loglevel=WARNING"
                )
            if redis_restarts == 0 and progress >= 0.4:
                redis.restart()
                redis_restarts += 1
            if postgres_restarts == 0 and progress >= 0.6 and private_pg is not None:
                private_pg.restart()
                postgres_restarts += 1
                # This process's own pool (the bench's polling and the resubmit below) may
                # hold a connection the restart killed mid-checkout; workers recover by
                # themselves (their jobs retry), the bench's one-shot submit would not.
                from db.session import engine

                engine().dispose()
            elif postgres_restarts == 0 and progress >= 0.6:
                sql(
                    PG_ADMIN,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (db_name,),
                )
                postgres_restarts += 1
            time.sleep(0.5)
        seconds = time.monotonic() - started
        final = counts(batch)
        done = terminal(batch)
        sim_account = sim_totals(state)
        billable_sim = int(sim_account.get("billable", 0))
        duplicate_billable = int(sim_account.get("duplicate_billable", 0))

        # The same manifest again: every card reuses its paid answer.
        batch2 = submit_path(manifest, settings=settings, provider=args.provider).batch_id
        exits_after = [0]

        def resubmit_done() -> bool:
            exits_after[0] += supervise()
            return terminal(batch2) >= args.jobs

        wait_until(resubmit_done, args.timeout)
        unplanned_exits += exits_after[0]
        sim_after = sim_totals(state)
        resubmit_billable = int(sim_after.get("billable", 0)) - billable_sim
        # The simulator knows which card each billed answer was for: a card billed again
        # had been paid for already. A card whose first job *failed* (never answered,
        # never paid) is rightly asked again; those calls are counted apart.
        paid_again = int(sim_after.get("duplicate_billable", 0)) - duplicate_billable
        reused = sql(
            pg_psycopg, "SELECT count(*) FROM job WHERE batch_id=%s AND reused_from IS NOT NULL", (batch2,)
        )

        duplicate_results = sql(
            pg_psycopg,
            "SELECT count(*) FROM (SELECT job_id FROM result GROUP BY job_id HAVING count(*) > 1) d",
        )[0][0]
        billable_attempts = sql(
            pg_psycopg,
            "SELECT count(*) FROM attempt a JOIN job j ON j.id=a.job_id WHERE a.billable AND j.batch_id=%s",
            (batch,),
        )[0][0]
        in_doubt = sql(
            pg_psycopg,
            "SELECT count(*) FROM attempt a JOIN job j ON j.id=a.job_id "
            "WHERE a.outcome='in_doubt' AND j.batch_id=%s",
            (batch,),
        )[0][0]
        sides_paid_twice = sql(
            pg_psycopg,
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM attempt a "
            "JOIN job j ON j.id=a.job_id WHERE a.billable AND j.batch_id=%s "
            "GROUP BY a.job_id, a.side) x WHERE n > 1",
            (batch,),
        )[0][0]
        answered_twice = sql(
            pg_psycopg,
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM attempt a "
            "JOIN job j ON j.id=a.job_id WHERE a.billable AND a.side='front' AND j.batch_id=%s "
            "GROUP BY a.job_id) x WHERE n > 1",
            (batch,),
        )[0][0]
        result = {
            "jobs": args.jobs,
            "terminal": done,
            "lost": args.jobs - done,
            "counts": final,
            "duplicate_results": int(duplicate_results),
            "billable_calls": billable_sim,
            "billable_calls_recorded": int(billable_attempts),
            "in_doubt_attempts": int(in_doubt),
            # billed by the provider and explained by no record: must be 0
            "unaccounted_billable_calls": max(0, billable_sim - int(billable_attempts) - int(in_doubt)),
            "sides_paid_twice": int(sides_paid_twice),
            "provider": args.provider,
            "duplicate_billable_calls": duplicate_billable,
            "duplicate_billable_calls_recorded": int(answered_twice),
            "kills": kills,
            "unplanned_worker_exits": unplanned_exits,
            "workers": args.workers,
            "worker_concurrency": args.concurrency,
            "duplicate_billable_bound": kills * args.concurrency,
            "redis_restarts": redis_restarts,
            "redis_restart_method": "kill -9 + start of a private redis-server without persistence",
            "postgres_restarts": postgres_restarts,
            "postgres_restart_method": (
                "pg_ctl restart -m fast of a private cluster"
                if private_pg is not None
                else "pg_terminate_backend (all connections of the bench database)"
            ),
            "fault_rate": args.fault_rate,
            "injected_faults": int(sim_account.get("injected", 0)),
            "provider_calls": int(sim_account.get("calls", 0)),
            "resubmit_jobs_terminal": terminal(batch2),
            "resubmit_reused": int(reused[0][0]),
            "resubmit_billable_calls": resubmit_billable,
            "resubmit_billable_calls_for_paid_cards": paid_again,
            "resubmit_billable_calls_for_unanswered_cards": resubmit_billable - paid_again,
            "seconds": round(seconds, 1),
            "rows_generated": len(rows),
        }
        result["ok"] = (
            result["lost"] == 0
            and result["duplicate_results"] == 0
            and result["unaccounted_billable_calls"] == 0
            and result["duplicate_billable_calls"] <= result["duplicate_billable_bound"]
            and result["resubmit_billable_calls_for_paid_cards"] == 0
            and result["resubmit_jobs_terminal"] == args.jobs
        )
        return result
    finally:
        for proc in [*workers, beat]:
            proc.send_signal(signal.SIGTERM)
        for proc in [*workers, beat]:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.stop()
        sim.stop()
        gateway.stop()
        apply_env({})
        if private_pg is not None:
            private_pg.stop()
        else:
            sql(PG_ADMIN, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--provider", default="acedata", choices=KNOWN_PROVIDERS)
    p.add_argument(
        "--postgres",
        choices=("private", "shared"),
        default="private",
        help="restart a private cluster (default) or cut connections on the shared one",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--fault-rate", type=float, default=0.2)
    p.add_argument("--latency-ms", type=float, default=40.0)
    p.add_argument("--redis-port", type=int, default=6390)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--timeout", type=float, default=1200.0)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = p.parse_args()
    result = run(args)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
