"""Export benchmark: a 1,000,000-job batch written to CSV and Parquet, beside a naive ORM loop.

Builds one batch in a fresh Postgres database with COPY (jobs, results with encrypted
synthetic PII, one attempt per job, a warning on 1 in 50), then runs each variant in its
own process so ``peak_rss_mb`` (ru_maxrss) is that variant's own:

- ``csv`` / ``parquet``: ``db.export.column_pages`` (windows of 5,000 job ids, read one
  ahead) into ``idbatch.export`` (masked PII, as ``idbatch export`` writes);
- ``naive``: the ORM loop one writes first: ``select(Job)…all()``, then per job its
  result, attempts and warnings by three more queries, ``csv.DictWriter``; on
  ``--baseline-jobs`` jobs of the same batch (it would take hours on a million).

Prints one JSON object (targets: >= 50,000 rows/s each, <= 200 MB).

    python bench/export.py [--jobs 1000000] [--baseline-jobs 5000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import PII_KEY, fresh_database

ROOT = Path(__file__).resolve().parent.parent
NAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"


def _env(db: str) -> None:
    os.environ.update(
        {
            "IDBATCH_DATABASE_URL": db,
            "IDBATCH_PII_KEY": PII_KEY,
            "IDBATCH_DATA_DIR": tempfile.mkdtemp(prefix="idbatch-bench-"),
            "IDBATCH_LOG_LEVEL": "WARNING",
        }
    )


def populate(db: str, jobs: int) -> int:
    """One finished batch of ``jobs`` jobs, written with COPY; returns the batch id."""
    _env(db)
    import psycopg

    from idbatch.pii import AD_ADDRESS, AD_ID_NUMBER, AD_NAME, vault

    v = vault()
    # 1,000 distinct tokens, cycled: decrypting costs the same whatever the plaintext.
    names = [v.encrypt(NAMES[i % 20] + NAMES[(i // 20) % 20], AD_NAME) for i in range(1000)]
    numbers = [v.encrypt(f"110101199{i % 10}0101{i % 1000:03d}{i % 10}", AD_ID_NUMBER) for i in range(1000)]
    addresses = [v.encrypt(f"北京市东城区景山前街{i}号", AD_ADDRESS) for i in range(1000)]
    now = dt.datetime.now(dt.UTC)
    url = db.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        batch = conn.execute(
            "INSERT INTO batch (source, kind, state, provider, provider_config, total_rows,"
            " ingest_complete, created_at, finished_at)"
            " VALUES ('bench', 'backfill', 'active', 'acedata', '{}', %s, true, %s, %s) RETURNING id",
            (jobs, now, now),
        ).fetchone()[0]  # type: ignore[index]
        cur = conn.cursor()
        with cur.copy(
            "COPY job (id, batch_id, row_number, external_ref, front_image, status, attempt_count, claim_seq,"
            " created_at, updated_at, finished_at) FROM STDIN"
        ) as copy:
            for i in range(1, jobs + 1):
                status = "negative" if i % 50 == 0 else "passed"
                copy.write_row(
                    (i, batch, i, f"R{i:07d}", f"images/R{i:07d}-front.jpg", status, 1, 1, now, now, now)
                )
        with cur.copy(
            "COPY result (job_id, provider, verdict, name_enc, sex, birth, address_enc, id_number_enc,"
            " id_number_hash, authority, valid_from, valid_to, valid_long_term, similarity, provider_verdict,"
            " answered_at, created_at) FROM STDIN"
        ) as copy:
            for i in range(1, jobs + 1):
                k = i % 1000
                verdict = "negative" if i % 50 == 0 else "passed"
                copy.write_row(
                    (i, "acedata", verdict, names[k], "男", dt.date(1990, 1, 1 + i % 28), addresses[k],
                     numbers[k], None, "北京市公安局东城分局", dt.date(2020, 1, 1), dt.date(2040, 1, 1),
                     False, 91.5, verdict, now, now)
                )  # fmt: skip
        with cur.copy(
            "COPY attempt (job_id, number, side, provider, account, started_at, latency_ms, http_status,"
            " provider_code, outcome, billable) FROM STDIN"
        ) as copy:
            for i in range(1, jobs + 1):
                code = "FailedOperation.IdNoExistSystem" if i % 50 == 0 else "Success"
                copy.write_row((i, 1, "front", "acedata", "bench", now, 300.0, 200, code, "answered", True))
        with cur.copy("COPY warning (job_id, code, source, provider_code) FROM STDIN") as copy:
            for i in range(50, jobs + 1, 50):
                copy.write_row((i, "id_not_in_registry", "provider", "-9999"))
        conn.execute("SELECT setval(pg_get_serial_sequence('job', 'id'), %s)", (jobs,))
        conn.execute("ANALYZE")
        conn.commit()
    return int(batch)


def naive(batch: int, limit: int, out: Path) -> int:
    """The ORM loop a first version writes: every job loaded, three queries per job."""
    import csv

    from sqlalchemy import select

    from db.models import Attempt, Job, JobWarning, Result
    from db.session import session_scope
    from idbatch.pii import AD_ID_NUMBER, AD_NAME, mask_id, mask_name, vault

    v = vault()
    n = 0
    with session_scope() as session, out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(
            fh, ["job_id", "ref", "status", "verdict", "warnings", "calls", "name", "id_number"]
        )
        writer.writeheader()
        for job in session.scalars(
            select(Job).where(Job.batch_id == batch).order_by(Job.id).limit(limit)
        ).all():
            result = session.scalar(select(Result).where(Result.job_id == job.id))
            attempts = session.scalars(select(Attempt).where(Attempt.job_id == job.id)).all()
            warnings = session.scalars(select(JobWarning).where(JobWarning.job_id == job.id)).all()
            writer.writerow(
                {
                    "job_id": job.id,
                    "ref": job.external_ref,
                    "status": job.status.value,
                    "verdict": result.verdict.value if result else None,
                    "warnings": ";".join(w.code for w in warnings),
                    "calls": sum(a.billable for a in attempts),
                    "name": mask_name(v.decrypt(result.name_enc, AD_NAME)) if result else None,
                    "id_number": mask_id(v.decrypt(result.id_number_enc, AD_ID_NUMBER)) if result else None,
                }
            )
            n += 1
    return n


def child(args: argparse.Namespace) -> None:
    _env(args.db)
    from db import export as rows_of
    from db.session import session_scope
    from idbatch.export import export
    from idbatch.settings import get_settings

    out = Path(args.out)
    server_s: float | None = None
    started, cpu = time.perf_counter(), time.process_time()
    if args.variant == "naive":
        n = naive(args.batch, args.limit, out)
    else:
        with session_scope() as session:
            backend = session.connection().connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
            before = _backend_cpu(backend)
            n = export(
                rows_of.column_pages(session, args.batch),
                rows_of.COLUMNS,
                args.variant,
                str(out),
                get_settings(),
            )
            after = _backend_cpu(backend)
            server_s = None if before is None or after is None else after - before
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "rows": n,
                "seconds": round(seconds, 3),
                "rows_per_s": round(n / seconds, 1),
                # this process's CPU (fetch thread included): the rate on a core of its
                # own, when the shared box is busy with other work
                "rows_per_cpu_s": round(n / cpu_s, 1),
                # the Postgres backend that served the export (None where /proc does not
                # show it, e.g. Postgres in another container): its CPU seconds, and rows
                # per CPU second of both processes together
                "postgres_cpu_s": None if server_s is None else round(server_s, 2),
                "rows_per_cpu_s_with_postgres": None if server_s is None else round(n / (cpu_s + server_s)),
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "bytes": out.stat().st_size,
            }
        )
    )


def _backend_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a local process, from /proc; None if not readable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_variant(db: str, batch: int, variant: str, out: Path, limit: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--db", db, "--batch", str(batch), "--out", str(out),
         "--limit", str(limit)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--baseline-jobs", type=int, default=5_000)
    parser.add_argument("--child")
    parser.add_argument("--db")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--out")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--out-dir", help="where the files are written (default: the system temp dir)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        args.variant = args.child
        child(args)
        return
    load = round(os.getloadavg()[0], 2)
    with (
        fresh_database("idbatch_bench_export", migrate=True) as db,
        tempfile.TemporaryDirectory(dir=args.out_dir) as tmp,
    ):
        started = time.perf_counter()
        batch = populate(db, args.jobs)
        populate_s = time.perf_counter() - started
        results = {
            variant: run_variant(db, batch, variant, Path(tmp) / f"out.{variant}", limit)
            for variant, limit in (("csv", 0), ("parquet", 0), ("naive", min(args.baseline_jobs, args.jobs)))
        }
    csv_rate, parquet_rate, naive_rate = (results[k]["rows_per_s"] for k in ("csv", "parquet", "naive"))
    peak = max(results["csv"]["peak_rss_mb"], results["parquet"]["peak_rss_mb"])
    print(
        json.dumps(
            {
                "jobs": args.jobs,
                "out_dir": args.out_dir or tempfile.gettempdir(),
                "load_average_1m_at_start": load,
                "populate_s": round(populate_s, 1),
                "csv_rows_per_s": csv_rate,
                "parquet_rows_per_s": parquet_rate,
                "peak_rss_mb": peak,
                "naive_rows_per_s": naive_rate,
                "csv_vs_naive": round(csv_rate / naive_rate, 1),
                "parquet_vs_naive": round(parquet_rate / naive_rate, 1),
                "targets_met": csv_rate >= 50_000 and parquet_rate >= 50_000 and peak <= 200,
                "variants": results,
            }
        )
    )


if __name__ == "__main__":
    main()
