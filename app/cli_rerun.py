"""``idbatch`` commands of issue 15: rerun, schedule, drift, history, export, billing.

Each parses its arguments and calls one function (``producers.rerun``, ``db.*``) that
tests call directly; output is JSON, PII masked unless ``--reveal`` (audited).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from app.cli_common import app, console, err_console, require_batch
from idbatch.settings import get_settings

schedule_app = typer.Typer(help="Rerun schedules (cron, UTC) fired by `idbatch beat`.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")

Only = Annotated[
    list[str] | None,
    typer.Option("--only", help="passed | negative | failed | expiring | all (repeatable; default all)"),
]
OlderThan = Annotated[int | None, typer.Option(help="cards whose last answer is older than N days")]
Expiring = Annotated[int | None, typer.Option(help="cards whose validity ends within N days")]
RefPrefix = Annotated[str | None, typer.Option(help="cards whose external_ref starts with this (tag/source)")]
Budget = Annotated[int | None, typer.Option(help="at most N billable calls; the rest stay pending")]


def _policy(
    only: list[str] | None,
    older_than: int | None,
    expiring: int | None,
    ref_prefix: str | None,
    budget: int | None,
) -> Any:
    from idbatch.reruns import PolicyError, RerunPolicy

    try:
        return RerunPolicy(
            only=tuple(only or ["all"]),
            older_than_days=older_than,
            expiring_within_days=expiring,
            ref_prefix=ref_prefix,
            budget=budget,
        )
    except PolicyError as exc:
        _refuse(str(exc))


def _print(data: Any) -> None:
    """Indented JSON on stdout, written as it is encoded (``billing --against`` of a large
    usage export can list many differences: rich's ``print_json`` held ~24 KB a row)."""
    for chunk in json.JSONEncoder(indent=2, ensure_ascii=False, default=str).iterencode(data):
        sys.stdout.write(chunk)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _refuse(message: str) -> NoReturn:
    """A usage error: one line on stderr (stdout may be a file being written), exit 2."""
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def rerun(
    batch: Annotated[int, typer.Argument(help="the batch whose cards to verify again")],
    only: Only = None,
    older_than: OlderThan = None,
    expiring: Expiring = None,
    ref_prefix: RefPrefix = None,
    budget: Budget = None,
    dry_run: Annotated[bool, typer.Option(help="print the cards, calls and cost; create nothing")] = False,
) -> None:
    """Create a batch of kind rerun linked to BATCH: the chosen cards, fresh provider calls."""
    from app.embedded import processing, source_folder
    from producers.rerun import rerun as do_rerun

    require_batch(batch)
    policy = _policy(only, older_than, expiring, ref_prefix, budget)
    settings = get_settings()
    with processing(settings, console, *source_folder(batch)) as (publish, follow):
        result = do_rerun(settings, batch, policy, dry_run=dry_run, publish=publish)
        if result.batch_id is not None:
            follow(result.batch_id)  # embedded mode: processed here (budget-held cards stay pending)
    _print(result.as_dict())


@app.command("rerun-release")
def rerun_release(
    batch: Annotated[int, typer.Argument(help="a rerun batch with cards held by its budget")],
    budget: Budget = None,
) -> None:
    """Send cards a rerun's budget held back (up to --budget more billable calls)."""
    from app.embedded import processing, source_folder
    from db.reruns import parent_of
    from db.session import session_scope
    from producers.rerun import release

    require_batch(batch)
    if budget is not None and budget < 0:
        _refuse("--budget takes 0 or more billable calls")
    with session_scope() as session:
        if parent_of(session, batch) is None:
            _refuse(f"batch {batch} is not a rerun: only a rerun's budget holds cards back")
    settings = get_settings()
    with processing(settings, console, *source_folder(batch)) as (publish, follow):
        released = release(settings, batch, budget, publish)
        follow(batch)
    _print({"batch": batch, "released": released})


@schedule_app.command("add")
def schedule_add(
    name: Annotated[str, typer.Argument(help="schedule name")],
    batch: Annotated[int, typer.Option(help="the batch (lineage) to rerun")],
    cron: Annotated[str, typer.Option(help='five-field cron, UTC, e.g. "0 2 * * *"')],
    only: Only = None,
    older_than: OlderThan = None,
    expiring: Expiring = None,
    ref_prefix: RefPrefix = None,
    budget: Budget = None,
) -> None:
    """Store a schedule: each slot reruns the lineage's latest batch under the policy."""
    from db import schedules
    from db.session import session_scope
    from idbatch.reruns import PolicyError

    if not name.strip():
        _refuse("a schedule needs a name")
    policy = _policy(only, older_than, expiring, ref_prefix, budget)
    try:
        with session_scope() as session:
            schedules.add(session, name, cron, batch, policy)
    except (PolicyError, schedules.ScheduleError) as exc:
        _refuse(str(exc))
    console.print(f"schedule {name} added")


@schedule_app.command("list")
def schedule_list() -> None:
    """Schedules with their next slot and last firing; then every firing recorded."""
    from db import schedules
    from db.models import utcnow
    from db.session import session_scope

    with session_scope() as session:
        _print({"schedules": schedules.listing(session, utcnow()), "firings": schedules.firings(session)})


def _change(name: str, action: str) -> None:
    from db import schedules
    from db.session import session_scope

    try:
        with session_scope() as session:
            if action == "remove":
                schedules.remove(session, name)
            else:
                schedules.set_paused(session, name, action == "pause")
    except schedules.ScheduleError as exc:
        _refuse(str(exc))
    console.print(f"schedule {name}: {action}d")


@schedule_app.command("pause")
def schedule_pause(name: Annotated[str, typer.Argument()]) -> None:
    """Stop firing (slots passed while paused are not caught up, beyond the latest one)."""
    _change(name, "pause")


@schedule_app.command("resume")
def schedule_resume(name: Annotated[str, typer.Argument()]) -> None:
    """Fire again from the next slot (the latest missed slot once, if any)."""
    _change(name, "resume")


@schedule_app.command("remove")
def schedule_remove(name: Annotated[str, typer.Argument()]) -> None:
    """Delete the schedule; its firings stay recorded."""
    _change(name, "remove")


@schedule_app.command("run-now")
def schedule_run_now(name: Annotated[str, typer.Argument()]) -> None:
    """Fire the schedule now, recorded as a firing like any slot."""
    from app.embedded import processing, source_folder
    from db.schedules import ScheduleError, by_name
    from db.session import session_scope
    from producers.rerun import run_now

    settings = get_settings()
    try:
        with session_scope() as session:
            lineage = by_name(session, name).batch_id
        # the lineage's images, served to URL-only providers in embedded mode, as `rerun` does
        with processing(settings, console, *source_folder(lineage)) as (publish, follow):
            fired = run_now(settings, name, publish)
            if fired and fired.get("batch") is not None:
                follow(fired["batch"])
        _print(fired)
    except ScheduleError as exc:
        _refuse(str(exc))


@app.command("drift")
def drift_cmd(
    batch: Annotated[int, typer.Argument(help="a rerun batch")],
    against: Annotated[int | None, typer.Option(help="compare with this batch (default: its parent)")] = None,
    limit: Annotated[int, typer.Option(help="changed cards listed at most")] = 1000,
) -> None:
    """Per card: status change, new/cleared warnings, changed fields, newly expired."""
    from db.drift import drift
    from db.reruns import parent_of
    from db.session import session_scope

    require_batch(batch)
    if limit < 0:
        _refuse("--limit takes 0 or more (0 lists no card, the counts stay whole)")
    if against is not None:
        require_batch(against)
        if against == batch:
            _refuse(f"--against {against} is batch {batch} itself: name another batch")
    with session_scope() as session:
        other = against if against is not None else parent_of(session, batch)
        if other is None:
            _refuse(f"batch {batch} is not a rerun; name one with --against")
        _print(drift(session, batch, other, limit=limit).as_dict())


@app.command()
def history(
    ref: Annotated[str | None, typer.Option(help="the card's external_ref")] = None,
    id_number: Annotated[str | None, typer.Option(help="an ID number (looked up by keyed hash)")] = None,
) -> None:
    """Every verification of one card across batches, masked."""
    from db.history import history as card_history
    from db.session import session_scope
    from idbatch.domain import WarningCode
    from idbatch.idnumber import IdNumberError, check

    if (ref is None) == (id_number is None):
        _refuse("give exactly one of --ref and --id-number")
    if id_number is not None:
        id_number = "".join(id_number.split())  # "110101 19921130 429X", as printed on forms
        try:
            check(id_number)
        except IdNumberError as exc:
            # only a shape no card has is refused: a number a provider read with a bad
            # check digit or an unknown region can still be in the record
            if exc.code == WarningCode.ID_FORMAT_INVALID or not id_number:
                _refuse(f"--id-number: {exc}")
    with session_scope() as session:
        _print(card_history(session, ref=ref, id_number=id_number))


@app.command()
def billing(
    from_: Annotated[str, typer.Option("--from", help="first day, YYYY-MM-DD (UTC)")],
    to: Annotated[str, typer.Option(help="last day, YYYY-MM-DD (UTC), included")],
    provider: Annotated[str | None, typer.Option(help="one provider")] = None,
    account: Annotated[str | None, typer.Option(help="one account")] = None,
    against: Annotated[Path | None, typer.Option(help="provider usage CSV: day,account,billable")] = None,
) -> None:
    """Per account and day: calls, billable, in doubt, reused (not billed); --against diffs."""
    from db.billing import UsageError, compare_usage, summary
    from db.session import session_scope
    from idbatch.providers import KNOWN_PROVIDERS

    try:
        first, last = _day(from_), _day(to)
    except ValueError:
        _refuse("--from and --to take YYYY-MM-DD")
    if first > last:
        _refuse(f"--from {first} is after --to {last}")
    if provider is not None and provider not in KNOWN_PROVIDERS:
        _refuse(f"unknown provider {provider!r}; one of {', '.join(sorted(KNOWN_PROVIDERS))}")
    if against is not None and provider is None:
        _refuse("--against compares one provider's usage export: give --provider")
    with session_scope() as session:
        rows = summary(session, first, last, provider=provider, account=account)
    out: dict[str, Any] = {"rows": rows}
    if against is not None:
        try:
            out["differences"] = compare_usage(rows, against, first, last, account=account)
        except UsageError as exc:
            _refuse(f"--against {against}: {exc}")
    _print(out)


def _day(text: str) -> dt.date:
    """A day written YYYY-MM-DD, nothing else (``fromisoformat`` also takes 20261201)."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        raise ValueError(text)
    return dt.date.fromisoformat(text)


@app.command("export")
def export_cmd(
    batch: Annotated[int, typer.Argument(help="batch id")],
    out: Annotated[str, typer.Option(help="a file path, s3://bucket/key, or - for stdout (csv, jsonl)")],
    format_: Annotated[str, typer.Option("--format", help="csv | jsonl | parquet")] = "csv",
    reveal: Annotated[
        bool, typer.Option(help="unmasked PII: only for IDBATCH_REVEAL_ACTORS, and audited")
    ] = False,
) -> None:
    """One row per job: status, verdict, warnings, codes, masked fields, calls, drift."""
    from db import export as rows_of
    from db.audit import actor, record_reveal
    from db.session import session_scope
    from idbatch.export import ExportError, check_destination, export

    require_batch(batch)
    settings = get_settings()
    try:
        check_destination(out, settings)  # before the audit row: a reveal that cannot be written is none
    except ExportError as exc:
        _refuse(str(exc))
    if reveal:
        allowed = settings.reveal_actors or ([] if settings.env == "production" else [actor()])
        if actor() not in allowed:
            console.print(f"[red]{actor()} may not --reveal;[/red] see IDBATCH_REVEAL_ACTORS")
            raise typer.Exit(2)
        with session_scope() as session:  # committed before anything is written
            record_reveal(session, "export --reveal", batch, f"{format_} to {out}")
    try:
        with session_scope() as session:
            n = export(
                rows_of.column_pages(session, batch, reveal=reveal), rows_of.COLUMNS, format_, out, settings
            )
    except ExportError as exc:
        _refuse(str(exc))
    summary = {"batch": batch, "rows": n, "format": format_, "out": out, "masked": not reveal}
    if out == "-":  # stdout holds the file: the summary goes to stderr
        sys.stderr.write(json.dumps(summary) + "\n")
    else:
        _print(summary)
