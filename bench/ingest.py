"""Ingest benchmark: a 1,000,000-row manifest (local file and S3 object) into Postgres + Redis.

Prints one JSON object: for idbatch's path (COPY + one fan-out message per committed
chunk) on the local file and on the same manifest as an S3 object (moto's server in a
subprocess, real boto3 over HTTP), and for the baseline in the same run: the path
before issue 6 (INSERT .. RETURNING per 1000-row chunk, one ``apply_async`` per row),
on fewer rows and extrapolated. Each variant runs in its own process so ``peak_rss_mb``
(ru_maxrss) is that variant's own. Rows are synthetic; 1 in 100 has a bad checksum.

    python bench/ingest.py [--rows 1000000] [--baseline-rows 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import PII_KEY, free_port, fresh_database

ROOT = Path(__file__).resolve().parent.parent
REDIS = os.environ.get("IDBATCH_BENCH_REDIS", "redis://127.0.0.1:6379/0")
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
NAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"


def write_manifest(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("external_ref,front_image,back_image,name,id_number\n")
        for i in range(rows):
            body = f"110101{1950 + i % 50}{1 + i % 12:02d}{1 + i % 28:02d}{i % 1000:03d}"
            check = "10X98765432"[sum(int(c) * w for c, w in zip(body, WEIGHTS, strict=True)) % 11]
            if i % 100 == 99:
                check = "0" if check != "0" else "1"
            name = NAMES[i % 20] + NAMES[(i // 20) % 20]
            fh.write(f"R{i:07d},images/R{i:07d}-front.jpg,images/R{i:07d}-back.jpg,{name},{body}{check}\n")


# --- one variant, in its own process ------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    os.environ.update(
        {
            "IDBATCH_DATABASE_URL": args.db,
            "IDBATCH_BROKER_URL": args.redis,
            "IDBATCH_QUEUE": args.queue,
            "IDBATCH_PII_KEY": PII_KEY,
            "IDBATCH_S3_ENDPOINT_URL": args.s3_endpoint or "",
            "IDBATCH_DATA_DIR": tempfile.mkdtemp(prefix="idbatch-bench-"),
        }
    )
    from app.embedded import current_app
    from idbatch.settings import get_settings
    from producers import submit

    settings = get_settings()
    current_app(settings)
    started = time.perf_counter()
    if args.variant == "baseline":
        result = naive_ingest(Path(args.manifest), args.limit)
    elif args.variant == "s3":
        from producers.s3 import submit_s3

        result = submit_s3(args.manifest, settings=settings, provider="acedata")
    else:
        result = submit.submit_path(Path(args.manifest), settings=settings, provider="acedata")
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "batch_id": result.batch_id,
                "rows": result.rows,
                "queued": result.queued,
                "rejected": result.rejected,
                "seconds": round(seconds, 2),
                "rows_per_s": round(result.rows / seconds),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


def naive_ingest(manifest: Path, limit: int) -> Any:
    """The path before issue 6, written out: read 1000 rows, INSERT .. RETURNING them in
    one transaction, then one ``apply_async`` per row; no COPY, no overlap, no fan-out."""
    from itertools import islice

    from db.ingest import insert_returning
    from db.session import session_scope
    from dispatch.publish import publish_jobs
    from producers import submit
    from producers.csv_manifest import read_manifest

    batch_id = submit.create_batch("bench-baseline", submit.BatchKind.BACKFILL, "acedata", {})
    rows = queued = 0
    with manifest.open("rb") as fh:
        items = islice(read_manifest(fh), limit)
        for chunk in submit._chunks(items, 1000):
            values = [submit._job_values(batch_id, item, "acedata", {}) for item in chunk]
            with session_scope() as session:
                ids = insert_returning(session, values)
            to_send = [i for i, v in zip(ids, values, strict=True) if v["status"] == submit.JobStatus.QUEUED]
            publish_jobs(to_send)
            rows += len(values)
            queued += len(to_send)
    return submit.SubmitResult(batch_id, rows, queued, rows - queued)


def run_child(variant: str, manifest: str, db: str, queue: str, **extra: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", variant, "--manifest", manifest, "--db", db]
    cmd += ["--redis", REDIS, "--queue", queue]
    for key, value in extra.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def queue_stats(queue: str) -> dict[str, int]:
    """Messages left on the broker for ``queue`` (no worker consumes them); then the queue is dropped."""
    import redis

    client = redis.Redis.from_url(REDIS)
    messages = client.llen(queue)
    client.delete(queue)
    return {"broker_messages": int(messages)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=20_000)
    parser.add_argument("--child", dest="variant")
    parser.add_argument("--manifest")
    parser.add_argument("--db")
    parser.add_argument("--redis", default=REDIS)
    parser.add_argument("--queue")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--s3-endpoint", default="")
    args = parser.parse_args()
    if args.variant:
        child(args)
        return

    import boto3

    sys.path.insert(0, str(ROOT))

    port = free_port()
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - moto accepts any credentials
        AWS_DEFAULT_REGION="us-east-1",
    )
    os.environ.update(
        {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    )
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory(prefix="idbatch-bench-") as tmp:
            manifest = Path(tmp) / "manifest.csv"
            write_manifest(manifest, args.rows)
            for _ in range(50):
                try:
                    s3 = boto3.client("s3", endpoint_url=endpoint)
                    s3.create_bucket(Bucket="bench")
                    break
                except Exception:  # noqa: BLE001 - moto still starting
                    time.sleep(0.2)
            s3.upload_file(str(manifest), "bench", "drops/manifest.csv")
            report: dict[str, Any] = {"manifest_rows": args.rows, "cpus": os.cpu_count()}
            # Each variant starts from the same state: a new, empty, migrated database.
            for variant, target in (("local", str(manifest)), ("s3", "s3://bench/drops/manifest.csv")):
                with fresh_database("idbatch_bench", migrate=True) as db:
                    queue = f"bench.{uuid.uuid4().hex[:8]}"
                    result = run_child(variant, target, db, queue, s3_endpoint=endpoint)
                    result.update(queue_stats(queue))
                    report[f"idbatch_{variant}"] = result
            with fresh_database("idbatch_bench", migrate=True) as db:
                queue = f"bench.{uuid.uuid4().hex[:8]}"
                base = run_child("baseline", str(manifest), db, queue, limit=args.baseline_rows)
                base.update(queue_stats(queue))
            base["extrapolated_seconds_for_manifest"] = round(args.rows / base["rows_per_s"], 1)
            base["note"] = (
                f"naive path (INSERT..RETURNING per 1000 rows + one apply_async per row) run on the first "
                f"{base['rows']} rows; seconds for {args.rows} rows extrapolated at its rows_per_s"
            )
            report["baseline"] = base
            report["rows"] = report["idbatch_local"]["rows"]
            report["rows_per_s"] = report["idbatch_local"]["rows_per_s"]
            report["rows_per_s_s3"] = report["idbatch_s3"]["rows_per_s"]
            report["peak_rss_mb"] = max(
                report["idbatch_local"]["peak_rss_mb"], report["idbatch_s3"]["peak_rss_mb"]
            )
            report["speedup_vs_baseline"] = round(report["rows_per_s"] / base["rows_per_s"], 1)
            print(json.dumps(report, indent=2))
    finally:
        moto.terminate()
        moto.wait(10)


if __name__ == "__main__":
    main()
