"""Every exit code of the operating commands, each in one line (no traceback anywhere):
0 done, 1 failure (watch timed out / too many failed / unexpected error), 2 usage or not found."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import get_args

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.cli_common import ProviderName
from app.cli_ops import judge_watch
from db.migrate import upgrade
from db.models import Batch, Job
from db.session import session_scope
from idbatch.domain import BatchKind, JobStatus
from idbatch.providers import KNOWN_PROVIDERS
from tests.conftest import Env


def make_batch(statuses: Iterable[JobStatus], *, kind: BatchKind = BatchKind.BACKFILL) -> int:
    statuses = list(statuses)
    with session_scope() as session:
        batch = Batch(
            source="synthetic.csv",
            kind=kind,
            provider="acedata",
            total_rows=len(statuses),
            ingest_complete=True,
        )
        session.add(batch)
        session.flush()
        for i, status in enumerate(statuses, 1):
            session.add(Job(batch_id=batch.id, row_number=i, external_ref=f"R{i}", status=status))
        return batch.id


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def db(env: Env) -> None:
    upgrade(env().database_url)


P, N, F = JobStatus.PASSED, JobStatus.NEGATIVE, JobStatus.FAILED


def test_watch_of_a_finished_batch_is_exit_0(db: None) -> None:
    batch = make_batch([P, P, N, JobStatus.REJECTED])  # negatives and rejected rows are not failures
    code, out = run("status", str(batch), "--watch")
    assert code == 0, out
    assert f"batch {batch} finished: 4 jobs, 0 failed" in out


def test_failed_jobs_over_the_budget_are_exit_1(db: None) -> None:
    batch = make_batch([P, P, P, F])
    code, out = run("status", str(batch), "--watch")  # default budget: no failed job
    assert code == 1 and "1 of 4 jobs failed (25.0% > --max-failed-percent 0)" in out
    code, out = run("status", str(batch), "--watch", "--max-failed-percent", "25")
    assert code == 0, out


def test_a_watch_that_times_out_is_exit_1(db: None) -> None:
    batch = make_batch([P, JobStatus.QUEUED])
    code, out = run("status", str(batch), "--watch", "--timeout", "0.3")
    assert code == 1 and f"batch {batch} timed out after 0.3s" in out


def test_an_unexpected_error_is_one_line_and_exit_1(env: Env) -> None:
    env(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    code, out = run("batches")
    assert code == 1
    assert out.strip() == "error: cannot reach the database (OperationalError); check IDBATCH_DATABASE_URL"


@pytest.mark.parametrize(
    "args",
    [
        ["status", "not-a-number"],
        ["status", "1", "--max-failed-percent", "150"],
        ["batches", "--state", "nosuchstate"],
        ["batches", "--limit", "0"],
        ["submit", "x.csv", "--provider", "nosuchprovider"],
        ["worker", "--loglevel", "LOUD"],
        ["listen"],  # no queue named anywhere
        ["nosuchcommand"],
    ],
)
def test_usage_errors_are_exit_2(db: None, args: list[str]) -> None:
    code, out = run(*args)
    assert code == 2, out


def test_bad_settings_are_exit_2_naming_the_variable(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from idbatch.settings import get_settings

    monkeypatch.setenv("IDBATCH_METRICS_PORT", "not-a-port")
    get_settings.cache_clear()
    code, out = run("batches")
    assert code == 2 and out.strip().startswith("error: invalid settings (IDBATCH_METRICS_PORT: ")
    assert "valid integer" in out  # what is wrong, said by pydantic without the input
    assert "not-a-port" not in out  # settings errors never echo input


def test_batches_lists_kind_state_counts_and_progress(db: None) -> None:
    done = make_batch([P, N, F])
    running = make_batch([P, JobStatus.QUEUED, JobStatus.RETRY_WAIT, JobStatus.RUNNING], kind=BatchKind.RERUN)
    code, out = run("batches", "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [b["id"] for b in lines] == [running, done]  # newest first
    assert lines[0]["kind"] == "rerun" and lines[0]["progress"] == 0.25 and not lines[0]["finished"]
    assert lines[1]["counts"] == {"passed": 1, "negative": 1, "failed": 1} and lines[1]["finished"]
    code, out = run("batches")
    assert code == 0 and "Recent batches" in out and "25.0%" in out


def test_no_batches_is_exit_0(db: None) -> None:
    assert run("batches") == (0, "no batches yet\n")


def test_the_cli_offers_every_provider_as_a_choice() -> None:
    assert get_args(ProviderName) == KNOWN_PROVIDERS


def test_the_watch_verdict_table() -> None:
    assert judge_watch(True, {}, 0, None).code == 0  # an empty manifest is a finished batch
    assert judge_watch(True, {"passed": 999, "failed": 1}, 0.1, None).code == 0
    assert judge_watch(True, {"passed": 998, "failed": 2}, 0.1, None).code == 1
    assert judge_watch(False, {"passed": 1}, 100, 5).code == 1


def test_bad_settings_in_a_fresh_process_print_no_secret_and_no_traceback(tmp_path: Path) -> None:
    """Before logging is configured (the settings failed), nothing may print their values."""
    import os
    import subprocess
    import sys

    accounts = '{"tencent_ocr": [{"name": "k1", "tencent_secret_id": "AKIDSECRET1",'
    accounts += ' "tencent_secret_key": "TOPSECRETKEY", "quota": "x"}]}'
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDBATCH_")}
    for bad in ({"IDBATCH_ACCOUNTS": accounts}, {"IDBATCH_PII_KEY": "supersecretvalue123"}):
        env = {**base, "IDBATCH_DATA_DIR": str(tmp_path / "d"), **bad}
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "batches"], env=env, capture_output=True, text=True, timeout=60
        )
        out = done.stdout + done.stderr
        assert done.returncode == 2, out
        assert out.strip().startswith("error: invalid settings")
        assert "TOPSECRETKEY" not in out and "AKIDSECRET1" not in out and "supersecretvalue123" not in out
        assert "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_a_database_without_tables_says_to_upgrade(env: Env, tmp_path: Path) -> None:
    env(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    code, out = run("batches")
    assert code == 2
    assert out.strip() == "error: the database has no idbatch tables yet; run `idbatch db upgrade`"


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("fastapi", "api"),
        ("boto3", "s3"),
        ("psycopg", "postgres"),
        ("pyarrow", "parquet"),
        ("packaging", "redis"),
    ],
)
def test_a_missing_optional_dependency_names_its_extra(module: str, extra: str) -> None:
    from app.cli_ops import one_line_error

    line, code = one_line_error(ModuleNotFoundError(f"No module named '{module}'", name=module))
    assert code == 2 and line.endswith(f"pip install 'idbatch[{extra}]'")


def test_a_tenant_webhook_url_inside_the_network_is_refused_at_add(db: None) -> None:
    code, out = run("tenants", "add", "acme", "--webhook-url", "http://169.254.169.254/hook")
    assert code == 2 and "webhook URL refused" in out
    assert run("tenants", "list")[1].count("acme") == 0  # nothing was created


def test_tenant_accounts_from_the_cli_are_checked_names(db: None) -> None:
    import json

    from db.tenants import list_tenants

    code, out = run("tenants", "add", "acme", "--accounts", "acedata:nope")
    assert code == 2 and "no account nope" in out
    assert run("tenants", "add", "acme", "--accounts", "acedata:default")[0] == 0
    assert {t["name"]: t["accounts"] for t in list_tenants()}["acme"] == {"acedata": ["default"]}
    assert run("tenants", "accounts", "acme", "tencent_ocr", "missing")[0] == 2
    code, out = run("tenants", "accounts", "acme", "acedata")  # no names: the restriction is lifted
    assert code == 0 and json.loads(out)["accounts"] == []
    assert {t["name"]: t["accounts"] for t in list_tenants()}["acme"] == {}


def test_the_batches_table_fits_80_columns_for_million_card_batches() -> None:
    from rich.console import Console

    from app.cli_ops import batches_table, short_count
    from db.ops import BatchLine

    assert [short_count(n) for n in (0, 99_999, 100_000, 999_999, 1_234_567, 20_000_000, 123_456_789)] == [
        "0", "99999", "100k", "999k", "1.23M", "20M", "123M"
    ]  # fmt: skip
    big = {"passed": 1_234_567, "negative": 654_321, "rejected": 12_345, "failed": 1_234, "queued": 2_000_000}
    lines = [
        BatchLine(
            id=9_999_999 - i,
            kind=kind,
            state="cancelled",
            provider="tencent_faceid",
            created_at="2026-12-01T09:40:12.123456",
            total_rows=3_902_467,
            counts=big,
            terminal=1_902_467,
            finished=False,
        )
        for i, kind in enumerate(("backfill", "rerun", "adhoc", "events"))
    ]
    console = Console(width=80, record=True, color_system=None)
    console.print(batches_table(lines))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80, text
    assert "1.23M" in text and "cancelled" in text and "backfill" in text and "48.8%" in text


def test_a_tenant_needs_a_name_and_known_providers(db: None) -> None:
    """A new-user review created tenants named "" and one with --providers nosuch (every
    POST of it then answered 422 invalid-config): both are refused, nothing created."""
    for args, reason in [
        (("tenants", "add", "   "), "a tenant needs a name"),
        (("tenants", "add", "acme", "--providers", "acedata,nosuch"), "unknown provider 'nosuch'"),
    ]:
        code, out = run(*args)
        assert code == 2 and reason in out, (args, out)
    assert json.loads(run("tenants", "list")[1]) == []
