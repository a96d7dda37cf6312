"""Per-card history across batches, the billing summary and its usage diff, the report's drift,
and the schedule commands."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import app as cli
from db.billing import compare_usage, summary
from db.history import history
from db.models import Job
from db.reports import build_report
from db.session import session_scope
from idbatch.pii import ID_NUMBER_RE
from simulator.samples import generate_sample
from tests.durability.conftest import Stack
from tests.reruns.conftest import backfill_and_rerun, work

pytestmark = pytest.mark.integration


def test_history_lists_every_verification_of_a_card_masked(stack: Stack, tmp_path: Path) -> None:
    parent, child = backfill_and_rerun(stack)
    rows = generate_sample(tmp_path / "again", 6, seed=11, defects=False)  # the same cards as the stack's
    with session_scope() as session:
        ref = session.scalar(select(Job.external_ref).where(Job.batch_id == parent, Job.row_number == 2))
        by_ref = history(session, ref=ref)
        by_number = history(session, id_number=rows[1].values["id_number"])
    assert [h["batch"] for h in by_ref] == [parent, child]
    assert [h["kind"] for h in by_ref] == ["backfill", "rerun"]
    assert all(h["status"] == "passed" and h["billed"] for h in by_ref)
    assert by_number == by_ref  # the keyed-hash look-up finds the same two verifications
    assert not ID_NUMBER_RE.search(json.dumps(by_ref, ensure_ascii=False))
    result = CliRunner().invoke(cli, ["history", "--ref", str(ref)])
    assert result.exit_code == 0 and len(json.loads(result.output)) == 2


def test_billing_per_account_and_day_and_the_usage_diff(stack: Stack, tmp_path: Path) -> None:
    backfill_and_rerun(stack)
    dup = stack.submit()  # a resubmitted manifest: answers reused, not billed
    work(stack, dup)
    today = dt.datetime.now(dt.UTC).date()
    with session_scope() as session:
        rows = summary(session, today, today)
    account = "default"  # idbatch's name for the one configured credential set
    billed = [r for r in rows if r["account"] != "-"]
    assert [(r["calls"], r["billable"], r["in_doubt"]) for r in billed] == [(12, 12, 0)]
    assert billed[0]["day"] == str(today) and billed[0]["account"] == account
    assert [r["reused"] for r in rows if r["account"] == "-"] == [6]
    usage = tmp_path / "usage.csv"
    usage.write_text(f"day,account,billable\n{today},{account},12\n{today},other,3\n", encoding="utf-8")
    assert compare_usage(rows, usage, today, today) == [
        {"day": str(today), "account": "other", "ours": 0, "in_doubt": 0, "provider": 3}
    ]
    provider = billed[0]["provider"]
    days = ["--from", str(today), "--to", str(today)]
    result = CliRunner().invoke(cli, ["billing", *days, "--provider", provider, "--against", str(usage)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["differences"]) == 1
    # one account asked for: the other account's usage is not a difference
    result = CliRunner().invoke(
        cli, ["billing", *days, "--provider", provider, "--account", account, "--against", str(usage)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["differences"] == []
    # a usage export is one provider's: without --provider there is nothing to compare it with
    result = CliRunner().invoke(cli, ["billing", *days, "--against", str(usage)])
    assert result.exit_code == 2 and "give --provider" in result.output


def test_report_of_a_rerun_has_a_drift_section(stack: Stack) -> None:
    parent, child = backfill_and_rerun(stack)
    with session_scope() as session:
        report = build_report(session, child)
        assert build_report(session, parent).drift is None
    assert report.drift is not None
    assert (report.drift["against"], report.drift["compared"], report.drift["changed"]) == (parent, 6, 0)
    result = CliRunner().invoke(cli, ["report", str(child)])
    assert result.exit_code == 0 and f"drift against batch {parent}" in result.output


def test_schedule_commands(stack: Stack) -> None:
    parent = stack.submit()
    work(stack, parent)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout  # the JSON; an embedded run's progress bar goes to stderr

    run("schedule", "add", "n1", "--batch", str(parent), "--cron", "0 2 * * *", "--only", "negative")
    bad = runner.invoke(cli, ["schedule", "add", "n2", "--batch", str(parent), "--cron", "nightly"])
    assert bad.exit_code == 2
    dup = runner.invoke(cli, ["schedule", "add", "n1", "--batch", str(parent), "--cron", "0 3 * * *"])
    assert dup.exit_code == 2
    listed = json.loads(run("schedule", "list"))
    assert [s["name"] for s in listed["schedules"]] == ["n1"]
    assert listed["schedules"][0]["policy"] == {"only": ["negative"]}
    run("schedule", "pause", "n1")
    assert json.loads(run("schedule", "list"))["schedules"][0]["paused"] is True
    fired = json.loads(run("schedule", "run-now", "n1"))
    assert fired["outcome"] == "empty" and fired["cards_selected"] == 0  # nothing was negative
    run("schedule", "remove", "n1")
    after = json.loads(run("schedule", "list"))
    assert after["schedules"] == [] and [f["outcome"] for f in after["firings"]] == ["empty"]
    dry = json.loads(run("rerun", str(parent), "--budget", "2", "--dry-run"))
    assert (dry["batch"], dry["cards_sent"], dry["cards_held_by_budget"]) == (None, 2, 4)
