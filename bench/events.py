"""Upload-event benchmark: events/s from SQS to committed jobs (issue 19; target >= 500/s).

Cards are uploaded to S3 as front and back (claims in the front's user metadata), and one
AWS-shaped notification per object is put on an SQS queue, fronts and backs shuffled.
The clock runs from the listener's start until every event is received, recorded in
the ledger, paired into a committed job, and deleted from the queue. Three variants on
the same servers in one run: the listener as configured by default
(``IDBATCH_EVENTS_CLAIMS=worker``: the worker reads the claims from the HEAD it sends
before calling, so the listener sends S3 nothing; ``events_per_s``), the listener reading
the claims itself (``listener``: a HEAD per object), and the baseline, one message at a
time (receive 1, commit, delete). The S3/SQS API is moto's server in a subprocess (real boto3 over
HTTP; bench/moto_fast.py, moto with its queue-depth hot spots O(1) and keep-alive, or
``--stock-moto``); CPU per event is reported per process (listener, moto, Postgres);
the database is a new, migrated Postgres database per variant. Jobs are not published
(no broker): this measures the producer side.

    python bench/events.py [--cards 2000] [--baseline-cards 300] [--concurrency 8] [--depth 200] [--senders 4]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import PG_ADMIN, PII_KEY, free_port, fresh_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process so far (/proc/<pid>/stat), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu(database: str) -> dict[int, float]:
    """{backend pid: CPU seconds so far} of the Postgres backends now serving ``database``."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [database]).fetchall()
    return {int(pid): proc_cpu_s(int(pid)) for (pid,) in rows}


def _start_moto(stock: bool) -> tuple[subprocess.Popen[bytes], str]:
    """moto's server in a subprocess: stock ``moto_server``, or bench/moto_fast.py (its SQS
    queue-depth hot spots made O(1), same answers; see that module)."""
    port = free_port()
    command = (
        [str(Path(sys.executable).parent / "moto_server")] if stock else [sys.executable, "moto_fast.py"]
    )
    proc = subprocess.Popen(
        [*command, "-H", "127.0.0.1", "-p", str(port)],
        cwd=Path(__file__).resolve().parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


def _feed(endpoint: str, queue: str, bodies: list[str], depth: int, senders: int, shared: Any) -> None:
    """The feeder's process: ``senders`` threads sending ``bodies`` in batches of 10."""
    import resource

    sys.path.insert(0, str(ROOT))
    from idbatch.storage.s3 import make_client

    sqs = make_client("sqs", endpoint)
    sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])  # connected before the clock
    shared["ready"].set()
    shared["go"].wait()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    lock = threading.Lock()
    taken = [0]

    def send() -> None:
        while True:
            with lock:
                if taken[0] >= len(bodies):
                    return
                waiting = taken[0] - shared["consumed"].value >= depth
                if waiting:
                    shared["full_waits"].value += 1
                else:
                    chunk = bodies[taken[0] : taken[0] + 10]
                    taken[0] += len(chunk)
            if waiting:
                time.sleep(0.002)
                continue
            entries = [{"Id": str(j), "MessageBody": b} for j, b in enumerate(chunk)]
            sqs.send_message_batch(QueueUrl=queue, Entries=entries)

    threads = [threading.Thread(target=send, daemon=True) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    shared["cpu_s"].value = usage.ru_utime + usage.ru_stime - cpu0


class Feeder:
    """Sends the notifications as S3 would while uploads go on, keeping the queue shallow.

    moto's ReceiveMessage costs grow with queue depth (it walks every message of the
    queue, in-flight ones too); SQS's do not. So at most ``depth`` messages are sent and
    not yet deleted at any time, and the listener never starves.

    The feeder plays S3, so it runs in a process of its own, with ``senders`` threads
    sending side by side (S3 delivers notifications from many hosts). A feeder thread
    inside the listener's process took the listener's GIL for moto's answers, and one
    sender was the benchmark's own ceiling: a ``SendMessageBatch`` to moto takes ~15 ms on
    this box, so one thread could not send more than ~650 events/s, and it never once
    found ``depth`` messages waiting (the runs measured the feeder, not the listener).
    ``full_waits`` counts how often a sender did: the listener was the limit then.
    """

    def __init__(
        self, endpoint: str, queue: str, bodies: list[str], depth: int = 60, senders: int = 4
    ) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # the listener's process has threads: no fork
        self._shared = {
            "consumed": ctx.Value("q", 0, lock=False),
            "full_waits": ctx.Value("q", 0, lock=False),
            "cpu_s": ctx.Value("d", 0.0, lock=False),
            "ready": ctx.Event(),
            "go": ctx.Event(),
        }
        self._lock = threading.Lock()
        self._process = ctx.Process(
            target=_feed, args=(endpoint, queue, bodies, depth, senders, self._shared), daemon=True
        )

    def start(self) -> None:
        """Start the process and wait until it can send (its start-up is not timed)."""
        self._process.start()
        if not self._shared["ready"].wait(60):
            raise RuntimeError("the feeder process did not start")

    def go(self) -> None:
        self._shared["go"].set()

    def join(self) -> None:
        self._process.join()
        if self._process.exitcode != 0:  # a send failed: the events it did not send never come
            raise RuntimeError(f"the feeder process failed (exit code {self._process.exitcode})")

    def took(self, n: int) -> None:
        """``n`` messages were deleted by the listener (its delete threads call this)."""
        with self._lock:
            self._shared["consumed"].value += n

    @property
    def full_waits(self) -> int:
        return int(self._shared["full_waits"].value)

    @property
    def cpu_s(self) -> float:
        """The feeder process's CPU (S3's part, not the listener's); known once it has ended."""
        return float(self._shared["cpu_s"].value)


def _populate(s3: Any, bucket: str, prefix: str, cards: int) -> list[str]:
    """Put ``cards`` fronts and backs; one notification body per object, shuffled."""
    body = b"\xff\xd8\xff\xe0" + os.urandom(2048) + b"\xff\xd9"  # never decoded: the listener reads no pixels
    name = "=?UTF-8?B?" + base64.b64encode("张伟".encode()).decode() + "?="

    def put(i: int) -> list[str]:
        out = []
        for side in ("front", "back"):
            key = f"{prefix}/C{i:06d}-{side}.jpg"
            meta = {"external-ref": f"R{i:06d}", "name": name, "id-number": "11010519491231002X"}
            etag = s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=meta if side == "front" else {})
            record = {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket},
                    "object": {"key": key, "size": len(body), "eTag": etag["ETag"].strip('"')},
                },
            }
            out.append(json.dumps({"Records": [record]}))
        return out

    with ThreadPoolExecutor(8) as pool:
        bodies = [b for pair in pool.map(put, range(cards)) for b in pair]
    random.Random(cards).shuffle(bodies)
    return bodies


def _jobs(batch_id: int) -> int:
    """Jobs the listener committed for the batch (imports here: after variant() set the env)."""
    from sqlalchemy import func, select

    from db.models import Job
    from db.session import session_scope

    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Job).where(Job.batch_id == batch_id)) or 0)


def variant(
    endpoint: str,
    cards: int,
    *,
    baseline: bool,
    concurrency: int,
    claims: str,
    depth: int = 200,
    senders: int = 4,
    moto_pid: int | None = None,
) -> dict[str, Any]:
    from sqlalchemy import func, select

    from app.embedded import apply_env
    from db.models import Job
    from db.session import session_scope
    from idbatch.storage.s3 import make_client
    from producers.events import EventListener

    with fresh_database("bench_events", migrate=True) as db:
        os.environ.update(
            {
                "IDBATCH_DATABASE_URL": db,
                "IDBATCH_PII_KEY": PII_KEY,
                "IDBATCH_S3_ENDPOINT_URL": endpoint,
                "IDBATCH_SQS_ENDPOINT_URL": endpoint,
                "IDBATCH_DATA_DIR": tempfile.mkdtemp(prefix="idbatch-bench-"),
                "IDBATCH_EVENTS_CONCURRENCY": str(concurrency),
                "IDBATCH_EVENTS_PAIR_WINDOW_S": "3600",
                "IDBATCH_LOG_LEVEL": "WARNING",
                "IDBATCH_EVENTS_CLAIMS": claims,
            }
        )
        settings = apply_env({})
        from idbatch.logging import configure

        configure("WARNING")
        s3, sqs = make_client("s3", endpoint), make_client("sqs", endpoint)
        name = f"{'base' if baseline else 'pool'}-{os.getpid()}-{time.monotonic_ns()}"
        bucket = f"bench-{name}"
        s3.create_bucket(Bucket=bucket)
        queue = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
        bodies = _populate(s3, bucket, "inbox", cards)
        events = len(bodies)
        listener = EventListener(settings, queue_url=queue, provider="acedata", publish=lambda ids: None)
        feeder = Feeder(endpoint, queue, bodies, depth, senders)
        deleting = listener._delete

        def counted(messages: list[dict[str, Any]]) -> int:
            n = deleting(messages)
            feeder.took(n)
            return n

        listener._delete = counted  # type: ignore[method-assign]
        database = db.rsplit("/", 1)[1]
        pg0 = postgres_cpu(database)
        moto0 = proc_cpu_s(moto_pid) if moto_pid else 0.0
        feeder.start()
        cpu0, t0 = time.process_time(), time.perf_counter()
        feeder.go()
        if baseline:
            received = deleted = 0
            while received < events:
                stats = listener.poll_once(wait_s=1, max_messages=1)
                received, deleted = received + stats.received, deleted + stats.deleted
        else:
            stats = listener.run(max_messages=events, wait_s=1)
            if _jobs(listener.batch_id) < cards:
                # `received` counts SQS's redeliveries too: the events they displaced are still
                # queued, and the run is not over until they are committed (timed with the rest)
                feeder.join()
                stats.add(listener.run(until_idle=True, wait_s=1))
            received, deleted = stats.received, stats.deleted
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        moto_cpu = (proc_cpu_s(moto_pid) - moto0) if moto_pid else 0.0
        pg1 = postgres_cpu(database)
        pg_cpu = sum(t - pg0.get(pid, 0.0) for pid, t in pg1.items())
        feeder.join()
        jobs = _jobs(listener.batch_id)
        with session_scope() as session:
            paired = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.batch_id == listener.batch_id, Job.back_image.is_not(None), Job.status == "queued")
            )
        return {
            "events": events,
            "received": received,
            "deleted": deleted,
            "jobs": jobs,
            "two_sided_jobs": paired,
            "seconds": round(elapsed, 3),
            "events_per_s": round(events / elapsed, 1),
            # who reads the uploads' claims: "worker" (the listener sends S3 nothing) or
            # "listener" (a HEAD per object; see IDBATCH_EVENTS_CLAIMS)
            "claims_read_by": claims,
            # CPU per event, by process: the listener, the feeder (which plays S3 sending
            # notifications), moto's server (S3 and SQS), the Postgres backends
            "listener_cpu_ms_per_event": round(1000 * cpu / events, 3),
            "feeder_cpu_ms_per_event": round(1000 * feeder.cpu_s / events, 3),
            "moto_cpu_ms_per_event": round(1000 * moto_cpu / events, 3),
            "postgres_cpu_ms_per_event": round(1000 * pg_cpu / events, 3),
            # SQS delivers at least once (moto's threaded server hands a message to two
            # concurrent receives now and then): a redelivery must be a duplicate, not a job
            "redelivered": received - events,
            # how often a sender found ``depth`` messages already waiting: 0 means the
            # notifications, not the listener, set the pace (the run measured the harness)
            "feeder_full_waits": feeder.full_waits,
            "all_paired": jobs == cards and paired == cards and deleted >= events,
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cards", type=int, default=2000)
    parser.add_argument("--baseline-cards", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--depth", type=int, default=200, help="most messages waiting in the queue")
    parser.add_argument("--senders", type=int, default=4, help="threads sending the notifications")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--no-listener-claims",
        action="store_true",
        help="skip the variant whose listener reads the claims (a HEAD per object)",
    )
    parser.add_argument("--stock-moto", action="store_true", help="moto_server as shipped (see moto_fast.py)")
    args = parser.parse_args()
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    moto, endpoint = _start_moto(args.stock_moto)
    try:
        import boto3

        for _ in range(100):
            try:
                boto3.client("s3", endpoint_url=endpoint).list_buckets()
                break
            except Exception:  # noqa: BLE001 - moto still starting
                time.sleep(0.1)
        report: dict[str, Any] = {
            "cpus": os.cpu_count(),
            "concurrency": args.concurrency,
            "depth": args.depth,
            "senders": args.senders,
            "moto": "stock moto_server" if args.stock_moto else "bench/moto_fast.py",
        }
        common = {
            "concurrency": args.concurrency,
            "depth": args.depth,
            "senders": args.senders,
            "moto_pid": moto.pid,
        }
        report["listener"] = variant(endpoint, args.cards, baseline=False, claims="worker", **common)
        report["events_per_s"] = report["listener"]["events_per_s"]
        if not args.no_listener_claims:
            # the same run with IDBATCH_EVENTS_CLAIMS=listener: a HEAD per object at ingest
            report["listener_reads_claims"] = variant(
                endpoint, args.cards, baseline=False, claims="listener", **common
            )
            report["events_per_s_claims_at_listener"] = report["listener_reads_claims"]["events_per_s"]
        if not args.no_baseline:
            report["baseline_one_at_a_time"] = variant(
                endpoint,
                args.baseline_cards,
                baseline=True,
                claims="worker",
                concurrency=1,
                moto_pid=moto.pid,
            )
            report["baseline_events_per_s"] = report["baseline_one_at_a_time"]["events_per_s"]
            report["speedup"] = round(report["events_per_s"] / report["baseline_events_per_s"], 2)
        report["target_events_per_s"] = 500
        report["target_met"] = report["events_per_s"] >= 500 and report["listener"]["all_paired"]
        print(json.dumps(report, indent=2))
    finally:
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
