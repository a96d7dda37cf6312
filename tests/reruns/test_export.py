"""The result writer: one row per job in CSV, JSONL and Parquet, masked unless revealed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import app as cli
from db.models import AuditEvent
from db.session import session_scope
from idbatch.pii import ID_NUMBER_RE
from tests.durability.conftest import Stack
from tests.reruns.conftest import backfill_and_rerun, work

pytestmark = pytest.mark.integration


def test_csv_jsonl_parquet_hold_one_masked_row_per_job(stack: Stack, tmp_path: Path) -> None:
    _, child = backfill_and_rerun(stack, budget=5)
    runner = CliRunner()
    for fmt in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"out.{fmt}"
        result = runner.invoke(cli, ["export", str(child), "--format", fmt, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["rows"] == 6
        assert out.stat().st_mode & 0o777 == 0o600, fmt  # PII, masked or not: the owner's only
    with (tmp_path / "out.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert len(rows) == len(lines) == len(table) == 6
    assert [r["status"] for r in rows] == [r["status"] for r in lines] == [r["status"] for r in table]
    assert sorted(r["status"] for r in rows) == ["passed"] * 5 + ["pending"]
    done = [r for r in lines if r["status"] == "passed"]
    assert all(r["billable_calls"] == 1 and r["attempts"] == 1 and r["in_doubt_calls"] == 0 for r in done)
    assert all(r["provider_codes"] == "Success" and r["verdict"] == "passed" for r in done)
    assert all("*" in r["id_number"] and "*" in r["name"] and r["birth"].endswith("-**-**") for r in done)
    text = (tmp_path / "out.csv").read_text(encoding="utf-8") + (tmp_path / "out.jsonl").read_text(
        encoding="utf-8"
    )
    assert not ID_NUMBER_RE.search(text)  # masked: no ID number anywhere
    assert all(r["drift"] is None for r in lines)  # nothing changed since the parent


def test_reveal_is_scope_checked_and_audited(stack: Stack, env: object, tmp_path: Path) -> None:
    parent = stack.submit()
    work(stack, parent)
    runner = CliRunner()
    out = tmp_path / "clear.jsonl"
    env(reveal_actors='["auditor"]', actor="intern")  # type: ignore[operator]
    refused = runner.invoke(cli, ["export", str(parent), "--format", "jsonl", "--out", str(out), "--reveal"])
    assert refused.exit_code == 2 and not out.exists()
    env(actor="auditor")  # type: ignore[operator]
    # a destination that cannot be written is refused before the audit row: no reveal happened
    for bad in ("", str(tmp_path), str(tmp_path / "no" / "such" / "x.jsonl"), "s3://"):
        nowhere = runner.invoke(cli, ["export", str(parent), "--format", "jsonl", "--out", bad, "--reveal"])
        assert nowhere.exit_code == 2 and len(nowhere.output.strip().splitlines()) == 1, (bad, nowhere.output)
    out.write_text("an older file, world-readable\n", encoding="utf-8")
    out.chmod(0o644)
    shown = runner.invoke(cli, ["export", str(parent), "--format", "jsonl", "--out", str(out), "--reveal"])
    assert shown.exit_code == 0, shown.output
    assert ID_NUMBER_RE.search(out.read_text(encoding="utf-8"))
    assert out.stat().st_mode & 0o777 == 0o600  # the revealed file is the owner's only, even over 0644
    with session_scope() as session:
        events = session.execute(select(AuditEvent.actor, AuditEvent.action, AuditEvent.batch_id)).all()
        assert [tuple(e) for e in events] == [("auditor", "export --reveal", parent)]
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1


def test_export_to_s3_streams_the_file_up_and_respects_the_allowlist(
    stack: Stack, env: object, aws: str, tmp_path: Path
) -> None:
    import uuid

    from idbatch.storage.s3 import make_client

    parent = stack.submit()
    work(stack, parent)
    bucket = f"results-{uuid.uuid4().hex[:8]}"
    env(s3_endpoint_url=aws, s3_allowed=f'["{bucket}"]')  # type: ignore[operator]
    s3 = make_client("s3", aws)
    s3.create_bucket(Bucket=bucket)
    runner = CliRunner()
    result = runner.invoke(
        cli, ["export", str(parent), "--format", "parquet", "--out", f"s3://{bucket}/nightly/1.parquet"]
    )
    assert result.exit_code == 0, result.output
    body = s3.get_object(Bucket=bucket, Key="nightly/1.parquet")["Body"].read()
    (tmp_path / "down.parquet").write_bytes(body)
    assert pq.read_table(tmp_path / "down.parquet").num_rows == 6
    refused = runner.invoke(cli, ["export", str(parent), "--out", "s3://elsewhere/x.csv"])
    assert refused.exit_code == 2 and "IDBATCH_S3_ALLOWED" in refused.output
