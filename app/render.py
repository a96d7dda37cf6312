"""Terminal rendering (rich) of progress and reports; kept apart from the queries."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from db.reports import Report
from idbatch import fields


def cell(value: object) -> Text:
    """A value that came from input (a ref, a reason, a source) as plain text for a table.

    Never markup: a ref of ``[link=…]`` or ``[red]`` is shown as written, not rendered. Control
    characters are shown as ``\\xNN`` escapes: an ESC in a manifest's ref must not reach the
    terminal as an escape sequence, and a TAB or newline must not break the table's rows.
    """
    text = "" if value is None else str(value)
    return Text(fields.CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


def render_report(report: Report, console: Console) -> None:
    state = "finished" if report.state == "active" and report.done else report.state
    console.rule(f"[bold]Batch {report.batch_id}[/bold] — {report.provider}, {report.kind}, {state}")
    console.print(Text.assemble("source: ", cell(report.source)))
    table = Table(title="Jobs by status", show_footer=True)
    table.add_column("status", footer="total")
    table.add_column("jobs", justify="right", footer=str(sum(report.counts.values())))
    for status, n in sorted(report.counts.items()):
        table.add_row(status, str(n))
    console.print(table)
    verdict = "[green]all rows accounted for[/green]" if report.accounted else "[red]ROWS MISSING[/red]"
    console.print(
        f"input rows: {report.total_rows}   jobs: {report.jobs}   terminal: {report.terminal}   → {verdict}"
    )
    console.print(
        f"provider calls: {report.attempts}   billable: {report.billable_calls}"
        f"   in doubt (worker died mid-call): {report.in_doubt_calls}"
        f"   jobs retried: {report.retried_jobs}   answers reused (not billed): {report.reused}"
    )
    for title, data in (
        ("Warnings", report.warnings),
        ("Local ID-number checks failed", report.local_check_failures),
        ("Claims vs recognized", report.claim_mismatches),
        ("Provider codes", report.provider_codes),
    ):
        if data:
            t = Table(title=title)
            t.add_column("code")
            t.add_column("count", justify="right")
            for code, n in data.items():
                t.add_row(cell(code), str(n))
            console.print(t)
    for title, rows, status in (
        ("Rejected rows", report.rejected, "rejected"),
        ("Processing failed", report.failed, "failed"),
    ):
        if rows:
            total = report.counts.get(status, len(rows))
            # The report lists the first rows only: say so, and where the rest are.
            caption = (
                f"first {len(rows)} of {total}; every row: idbatch export {report.batch_id} --format csv"
                if total > len(rows)
                else None
            )
            t = Table(title=title)
            for col in ("row", "ref", "reason"):
                t.add_column(col)
            for r in rows:
                t.add_row(str(r["row"]), cell(r["ref"]), cell(r["reason"]))
            console.print(t)
            if caption:
                console.print(caption, soft_wrap=True)
    if report.drift is not None:
        d = report.drift
        console.print(
            f"drift against batch {d['against']}: {d['changed']} of {d['compared']} cards changed"
            f" ({d['not_compared']} not verified in both)  "
            + "  ".join(f"{kind}: {n}" for kind, n in sorted(d["by_kind"].items()))
        )
        if d["changes"]:
            t = Table(title="Drift (first cards)")
            for col in ("ref", "status", "new warnings", "cleared", "fields", "newly expired"):
                t.add_column(col)
            for c in d["changes"]:
                t.add_row(
                    cell(c["ref"]),
                    c.get("status", ""),
                    ", ".join(c.get("new_warnings", [])),
                    ", ".join(c.get("cleared_warnings", [])),
                    ", ".join(c.get("changed_fields", [])),
                    "yes" if c.get("newly_expired") else "",
                )
            console.print(t)
    if report.samples:
        t = Table(title="Sample results (masked)")
        for col in ("row", "ref", "status", "name", "id_number", "sex", "birth", "similarity"):
            t.add_column(col)
        for s in report.samples:
            t.add_row(
                *(
                    cell(s[c])
                    for c in ("row", "ref", "status", "name", "id_number", "sex", "birth", "similarity")
                )
            )
        console.print(t)


class RateColumn(ProgressColumn):
    """Jobs finished per second, over rich's recent window (so a stall shows at once)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f} jobs/s", style="progress.data.speed")


def follow(
    poll: Callable[[], tuple[int, int, dict[str, int], bool]],
    console: Console,
    timeout_s: float | None = None,
    interval_s: float = 0.25,
) -> bool:
    """Show a progress bar until ``poll`` says the batch is finished; False on timeout.

    ``poll`` returns (terminal jobs, jobs, counts by status, finished); "finished" comes
    from the batch (ingest complete, every row a terminal job), so an empty or
    header-only manifest is finished at once instead of waiting for a total of 0.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with Progress(
        TextColumn("[bold]verifying"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        speed_estimate_period=60.0,
        transient=False,
    ) as progress:
        task = progress.add_task("batch", total=None, detail="")
        while True:
            done, total, counts, finished = poll()
            detail = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            progress.update(task, completed=done, total=total or None, detail=detail)
            if finished:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(interval_s)
