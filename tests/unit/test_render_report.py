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


def test_refs_and_reasons_are_shown_as_written_never_as_markup_or_escapes() -> None:
    """A hostile manifest's ref must not style, link or drive the terminal."""
    r = report(2, 0)
    r.source = "s3://b/[red]m.csv"
    r.rejected = [
        {"row": 1, "ref": "[link=https://evil.example]click[/link]", "reason": "row 1: [bold]bad[/bold]"},
        {"row": 2, "ref": "R\x1b[2J\tX", "reason": "line\nbreak"},
    ]
    console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
    render_report(r, console)
    styled = console.export_text(styles=True, clear=False)
    plain = console.export_text()
    assert "[link=https://evil.example]click[/link]" in plain and "[bold]bad[/bold]" in plain
    assert "s3://b/[red]m.csv" in plain
    assert "\x1b[2J" not in styled and "R\\x1b[2J\\x09X" in plain
    assert "\x1b]8;" not in styled  # no OSC 8 hyperlink reached the output
    assert "line\\x0abreak" in plain
