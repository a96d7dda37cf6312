"""The terminal report says when its lists of rejected and failed rows are cut short."""

from __future__ import annotations

from rich.console import Console

from app.render import render_report
from db.reports import Report


def report(rejected: int, listed: int) -> Report:
    rows = [{"row": n, "ref": f"R{n}", "reason": f"row {n}: bad"} for n in range(1, listed + 1)]
    return Report(
        batch_id=7, source="m.csv", provider="acedata", kind="backfill", state="active",
        total_rows=rejected, jobs=rejected, counts={"rejected": rejected}, terminal=rejected,
        attempts=0, billable_calls=0, retried_jobs=0, warnings={}, local_check_failures={},
        claim_mismatches={}, provider_codes={}, rejected=rows,
    )  # fmt: skip


def text_of(r: Report) -> str:
    console = Console(record=True, width=160)
    render_report(r, console)
    return console.export_text()


def test_a_cut_list_names_how_many_and_where_the_rest_are() -> None:
    assert "first 20 of 23; every row: idbatch export 7 --format csv" in text_of(report(23, 20))


def test_a_whole_list_has_no_such_line() -> None:
    assert "first " not in text_of(report(3, 3))
