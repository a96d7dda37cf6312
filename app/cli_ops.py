"""``idbatch`` commands and helpers for operating it: ``batches``, ``status --watch`` exit codes,
the ingest progress bar, one-line errors.

Exit codes, for every command (README "Operating a batch"):

- 0: done as asked (``status --watch``: the batch finished within its failure budget);
- 1: failure (``--watch`` timed out or too many jobs failed, an ingest was interrupted,
  an unexpected error, shown as one line);
- 2: usage error or something named that does not exist (a batch, a provider, a bucket).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli_common import app, console, require_batch
from idbatch.domain import BatchState
from idbatch.pii import scrub

if TYPE_CHECKING:
    from db.ops import BatchLine

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class WatchVerdict:
    code: int
    message: str


def judge_watch(
    finished: bool, counts: dict[str, int], max_failed_percent: float, timeout_s: float | None
) -> WatchVerdict:
    """The exit code of ``status --watch``: a pure function of what the watch ended with.

    ``failed`` counts jobs whose *processing* failed (no answer after every attempt);
    negative verdicts and rejected rows are answers about the cards, not failures.
    """
    jobs = sum(counts.values())
    failed = counts.get("failed", 0)
    percent = 100.0 * failed / jobs if jobs else 0.0
    if not finished:
        return WatchVerdict(EXIT_FAILURE, f"timed out after {timeout_s:g}s; the batch is still running")
    if percent > max_failed_percent:
        return WatchVerdict(
            EXIT_FAILURE,
            f"{failed} of {jobs} jobs failed ({percent:.1f}% > --max-failed-percent {max_failed_percent:g})",
        )
    return WatchVerdict(EXIT_OK, f"finished: {jobs} jobs, {failed} failed ({percent:.1f}%)")


def watch(batch: int, timeout_s: float | None, max_failed_percent: float) -> None:
    """``status --watch``: follow until terminal, then exit with ``judge_watch``'s code."""
    from app.embedded import wait_for_batch
    from db.reports import status_counts
    from db.session import session_scope

    require_batch(batch)
    finished = wait_for_batch(batch, console, timeout_s=timeout_s)
    with session_scope() as session:
        counts = status_counts(session, batch)
    verdict = judge_watch(finished, counts, max_failed_percent, timeout_s)
    style = "green" if verdict.code == EXIT_OK else "red"
    console.print(f"[{style}]batch {batch} {verdict.message}[/{style}]")
    raise typer.Exit(verdict.code)


STATES = [s.value for s in BatchState]


def short_count(n: int) -> str:
    """A count in at most 5 characters: exact below 100,000, then 123k / 1.23M (exact in --json)."""
    if n < 100_000:
        return str(n)
    if n < 1_000_000:
        return f"{n // 1000}k"
    if n < 100_000_000:
        return f"{n / 1_000_000:.2f}".rstrip("0").rstrip(".") + "M"
    return f"{n // 1_000_000}M"


def batches_table(lines: list[BatchLine]) -> Table:
    """The batches as a table that fits 80 columns even for million-card batches.

    Why: counts of a backfill run to seven digits and seven such columns overflowed 80
    columns (rich then cuts cells to "…"); the provider, full timestamps and exact counts
    are in ``--json``.
    """
    table = Table(title="Recent batches", box=box.SIMPLE_HEAD, pad_edge=False, padding=0)
    for col, justify in (
        ("id", "right"),
        ("kind", "left"),
        ("state", "left"),
        ("created UTC", "left"),
        ("rows", "right"),
        ("pass", "right"),
        ("neg", "right"),
        ("rej", "right"),
        ("fail", "right"),
        ("open", "right"),
        ("done", "right"),
    ):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for b in lines:
        c = b.counts
        state_text = "finished" if b.finished and b.state == "active" else b.state
        table.add_row(
            str(b.id),
            b.kind,
            state_text,
            b.created_at.replace("T", " ")[5:16],
            short_count(b.total_rows),
            *(short_count(c.get(s, 0)) for s in ("passed", "negative", "rejected", "failed")),
            short_count(sum(c.values()) - b.terminal),
            f"{100 * b.progress:.1f}%",
        )
    return table


@app.command(
    epilog="Examples:\n\n  idbatch batches\n\n  idbatch batches --limit 50 --state active --json",
)
def batches(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="how many, newest first")] = 20,
    state: Annotated[
        str | None, typer.Option(help=f"only batches in this state: {', '.join(STATES)}")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per batch, one per line")] = False,
) -> None:
    """List recent batches: kind, state, counts by status and progress."""
    from db.ops import recent_batches
    from db.session import session_scope

    if state is not None and state not in STATES:
        console.print(f"[red]unknown state {state!r}[/red]; one of {', '.join(STATES)}")
        raise typer.Exit(EXIT_USAGE)
    with session_scope() as session:
        lines = recent_batches(session, limit, BatchState(state) if state else None)
    if as_json:
        for line in lines:
            typer.echo(json.dumps(line.as_dict()))
        return
    if not lines:
        console.print("no batches yet")
        return
    console.print(batches_table(lines))


@contextmanager
def ingest_progress(out: Console) -> Iterator[None]:
    """A progress bar for the ingest of this process (rows, rows/s; % and ETA for a local file).

    Only on a terminal: piped output stays the one summary line. The bar is fed by a
    thread reading ``idbatch.metrics.ingest_progress``, so ingest itself does nothing
    for it beyond the per-chunk counter it keeps anyway.
    """
    from idbatch.metrics import ingest_progress as state

    if not out.is_terminal:
        yield
        return
    start_rows, t0 = state.rows, time.monotonic()
    stop = threading.Event()
    with Progress(
        TextColumn("[bold]ingesting"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as progress:
        task = progress.add_task("ingest", total=None, detail="")

        def loop() -> None:
            while not stop.wait(0.25):
                rows, elapsed = state.rows - start_rows, time.monotonic() - t0
                rate = rows / elapsed if elapsed > 0 else 0.0
                fraction = state.fraction()
                eta = ""
                if fraction:
                    eta = f"  ETA {max(0.0, elapsed / fraction - elapsed):.0f}s"
                    progress.update(task, total=1.0, completed=fraction)
                progress.update(task, detail=f"{rows:,} rows  {rate:,.0f} rows/s{eta}")

        thread = threading.Thread(target=loop, name="ingest-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(2)


# Optional dependencies and the extra that brings each (pyproject.toml).
_EXTRAS = {
    "fastapi": "api",
    "standardwebhooks": "api",
    "boto3": "s3",
    "botocore": "s3",
    "psycopg": "postgres",
    "redis": "redis",
    "packaging": "redis",
    "pyarrow": "parquet",
}


def one_line_error(exc: BaseException) -> tuple[str, int]:
    """The line shown for an unexpected error, and its exit code (never a traceback)."""
    from pydantic import ValidationError

    first = (scrub(str(exc)).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, ValidationError):  # settings from the environment: a usage error
        errors = exc.errors()
        fields = ", ".join(str(e["loc"][0]).upper() for e in errors if e.get("loc"))
        # what is wrong where, for the first error: pydantic's message and the path inside
        # the value (IDBATCH_ACCOUNTS: acedata.0.acedata_tokn), never the input itself
        first_error = errors[0] if errors else None
        why = str(first_error["msg"]).removeprefix("Value error, ") if first_error else ""
        if not fields:  # a check across settings: its message names them
            return f"error: invalid settings{': ' + why if why else ''}", EXIT_USAGE
        where = ".".join(str(p) for p in first_error["loc"][1:]) if first_error else ""
        return f"error: invalid settings (IDBATCH_{fields}: {where + ': ' if where else ''}{why})", EXIT_USAGE
    if type(exc).__name__ == "SettingsError":  # pydantic-settings: a value it could not parse
        field = re.search(r'field "(\w+)"', str(exc))
        which = f"IDBATCH_{field.group(1).upper()}" if field else "settings"
        return f"error: invalid settings ({which}: not valid JSON for its type)", EXIT_USAGE
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in _EXTRAS:
        module = (exc.name or "").split(".")[0]
        return (
            f"error: this needs the optional dependency {module}: pip install 'idbatch[{_EXTRAS[module]}]'",
            EXIT_USAGE,
        )
    name = type(exc).__name__
    text = str(exc)
    if "no such table" in text or "UndefinedTable" in text or 'relation "' in text:
        return "error: the database has no idbatch tables yet; run `idbatch db upgrade`", EXIT_USAGE
    if "no such column" in text or "UndefinedColumn" in text:  # an upgrade of idbatch, not of its schema
        return "error: the database schema is older than this idbatch; run `idbatch db upgrade`", EXIT_USAGE
    if "unable to open database file" in text:
        hint = "check IDBATCH_DATABASE_URL and IDBATCH_DATA_DIR"
        return f"error: cannot open the database file; {hint}", EXIT_FAILURE
    if "OperationalError" in name:
        return f"error: cannot reach the database ({name}); check IDBATCH_DATABASE_URL", EXIT_FAILURE
    return f"error: {name}: {first}" if first else f"error: {name}", EXIT_FAILURE


def report_error(exc: BaseException) -> int:
    """Print the one line; the traceback goes to the log at DEBUG only.

    Through stdlib logging, not structlog: when the settings themselves failed, logging is
    not configured yet and structlog's default would print a rich traceback with local
    variables (the settings' values, secrets included). Settings errors get no traceback at
    all: pydantic's would quote the environment.
    """
    from pydantic import ValidationError

    line, code = one_line_error(exc)
    if not isinstance(exc, ValidationError):
        logging.getLogger(__name__).debug("command failed", exc_info=exc)
    Console(stderr=True).print(line, markup=False, highlight=False, soft_wrap=True)
    return code
