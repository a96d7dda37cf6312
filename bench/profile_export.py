"""Where an export's time goes: each stage timed on its own, on one batch, repeated.

The method behind the export figures in docs/reruns.md: a batch built as
``bench/export.py`` builds it (``--jobs``, default 200,000), then, ``--repeat`` times:

- ``postgres_us_per_row``: the server's execution time of the window statement
  (``EXPLAIN (ANALYZE, TIMING OFF)``, ten windows spread over the batch), for the
  statement as committed and, for comparison, without the Postgres-side work
  (``whole_tokens``: tokens sent whole, ``answered_at`` as a timestamp);
- ``fetch``: this process's CPU to receive and decode every window (psycopg, binary);
- ``transform``: ``column_pages`` over pages already fetched (decrypt, mask, format);
- ``csv_arrow`` / ``csv_stdlib`` / ``parquet``: each writer over pages already transformed.

CPU seconds per row (``time.process_time``), the figure a busy box disturbs least.
``--cprofile`` adds a cProfile of one whole CSV export (top 20 by own time) on stderr.

    python bench/profile_export.py [--jobs 200000] [--repeat 3] [--db URL --batch ID] [--cprofile]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _cpu_us_per_row(fn: Callable[[], int]) -> float:
    started = time.process_time()
    n = fn()
    return round((time.process_time() - started) / n * 1e6, 2)


def _server_us_per_row(raw: Any, sql: str, params: dict[str, Any], windows: list[tuple[int, int]]) -> float:
    picked = windows[:: max(1, len(windows) // 10)][:10]
    total_ms, rows = 0.0, 0
    for lo, hi in picked:
        plan = raw.execute(
            "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql, {**params, "lo": lo, "hi": hi}
        ).fetchone()[0][0]
        total_ms += plan["Execution Time"]
        rows += plan["Plan"]["Actual Rows"]
    return round(total_ms * 1000 / max(rows, 1), 2)


def profile(batch: int, repeat: int, cprofile: bool) -> dict[str, Any]:
    from db import export as rows_of
    from db.session import session_scope
    from idbatch import export as writers
    from idbatch.pii import vault

    out = Path(tempfile.mkdtemp(prefix="idbatch-profile-")) / "out"
    figures: dict[str, list[float]] = {}
    with session_scope() as session:
        head = vault().current_token_head
        windows = rows_of._windows(session, batch)
        dialect = session.get_bind().dialect
        raw = session.connection().connection.driver_connection
        raw.execute("SET LOCAL DateStyle = 'ISO, MDY'")  # type: ignore[union-attr]
        statements = {}
        for label, split in (("postgres_us_per_row", head), ("postgres_us_per_row_whole_tokens", None)):
            compiled = rows_of._statement(session, batch, split=split).compile(dialect=dialect)
            statements[label] = (str(compiled), dict(compiled.params))
        sql, params = statements["postgres_us_per_row"]
        pages: list[Any] = []

        def fetch() -> int:
            pages.clear()
            with raw.cursor(binary=True) as cursor:  # type: ignore[union-attr]
                for lo, hi in windows:
                    pages.append(cursor.execute(sql, {**params, "lo": lo, "hi": hi}).fetchall())
            return sum(len(p) for p in pages)

        def prefetched(*_: Any) -> Iterator[Any]:
            return iter(pages)

        columns: list[Any] = []

        def transform() -> int:
            columns.clear()
            real, rows_of._pages = rows_of._pages, prefetched  # type: ignore[assignment]
            try:
                columns.extend(rows_of._column_pages(session, batch, False, head))
            finally:
                rows_of._pages = real
            return sum(len(p[0]) for p in columns)

        def writer(fn: Callable[..., int]) -> Callable[[], int]:
            return lambda: fn(iter(columns), rows_of.COLUMNS, out)

        stages = {
            "fetch": fetch,
            "transform": transform,
            "csv_arrow": writer(writers.write_csv),
            "csv_stdlib": writer(writers._write_csv_stdlib),
            "parquet": writer(writers.write_parquet),
        }
        for _ in range(repeat):
            for label, (stmt_sql, stmt_params) in statements.items():
                figures.setdefault(label, []).append(_server_us_per_row(raw, stmt_sql, stmt_params, windows))
            for label, stage in stages.items():
                figures.setdefault(f"{label}_cpu_us_per_row", []).append(_cpu_us_per_row(stage))
        if cprofile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.runcall(writers.write_csv, rows_of.column_pages(session, batch), rows_of.COLUMNS, out)
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(20)
    return {"rows": sum(len(p) for p in pages), "repeat": repeat, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", help="an existing database (SQLAlchemy URL) holding --batch")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from common import fresh_database
    from export import _env, populate

    if args.db:
        _env(args.db)
        print(json.dumps(profile(args.batch, args.repeat, args.cprofile)))
        return
    with fresh_database("idbatch_bench_profile_export", migrate=True) as db:
        batch = populate(db, args.jobs)
        print(json.dumps({"jobs": args.jobs, **profile(batch, args.repeat, args.cprofile)}))


if __name__ == "__main__":
    main()
