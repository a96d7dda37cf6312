"""Postgres's export path (tokens cut up and ``answered_at`` written by Postgres) gives what
the generic path (SQLite's: whole tokens, Python formats) gives, value for value; and
``--out -`` writes the file to stdout."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from app.cli import app as cli
from db import export
from db.models import Job, Result
from db.session import session_scope
from idbatch.domain import JobStatus
from idbatch.pii import AD_ADDRESS, AD_NAME, AEAD_V1, ID_NUMBER_RE, vault
from tests.durability.conftest import Stack
from tests.reruns.conftest import backfill_and_rerun, work

pytestmark = pytest.mark.integration


def _rows(batch: int, reveal: bool, split: bytes | None) -> list[tuple[object, ...]]:
    with session_scope() as session:
        pages = list(export._column_pages(session, batch, reveal, split))
    return [row for page in pages for row in zip(*page, strict=True)]


def _v1(plain: str) -> bytes:
    """A token in the format before key ids (no associated data): the slow path opens it."""
    nonce = os.urandom(12)
    return AEAD_V1 + nonce + vault()._current.v1.encrypt(nonce, plain.encode(), None)


def test_postgres_path_equals_the_generic_path(stack: Stack) -> None:
    parent, child = backfill_and_rerun(stack, budget=5)
    v = vault()
    with session_scope() as session:
        jobs = list(session.scalars(select(Job).where(Job.batch_id == child).order_by(Job.id)))
        results = {
            r.job_id: r
            for r in session.scalars(select(Result).where(Result.job_id.in_([j.id for j in jobs])))
        }
        done = [j for j in jobs if j.id in results]
        assert len(done) >= 3
        first, second, third = (results[j.id] for j in done[:3])
        first.name_enc = _v1("欧阳娜娜")  # an older token format: opened whole, by decrypt
        first.answered_at = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)  # no fraction
        second.address_enc = v.encrypt("", AD_ADDRESS)  # an empty value: no value
        second.answered_at = dt.datetime(2026, 3, 4, 5, 6, 7, 500000, tzinfo=dt.UTC)
        third.name_enc = None
        # the parent's card of the first done job had another outcome: drift
        session.execute(
            update(Job)
            .where(Job.batch_id == parent, Job.row_number == done[0].row_number)
            .values(status=JobStatus.NEGATIVE)
        )
    head = v.current_token_head
    for reveal in (False, True):
        fast, generic = _rows(child, reveal, head), _rows(child, reveal, None)
        assert fast == generic
        rows = [dict(zip(export.COLUMNS, row, strict=True)) for row in fast]
        by_id = {r["job_id"]: r for r in rows}
        one, two, three = (by_id[j.id] for j in done[:3])
        assert one["name"] == ("欧阳娜娜" if reveal else "欧***")
        assert one["answered_at"] == "2026-03-04T05:06:07+00:00"
        assert two["answered_at"] == "2026-03-04T05:06:07.500000+00:00"
        assert (two["address"] is None) != reveal  # masked: an empty value is no value
        assert three["name"] is None
        assert one["drift"] == "negative -> passed"
        assert [r["drift"] for r in rows].count(None) == len(rows) - 1
        assert not reveal or ID_NUMBER_RE.search(str(one["id_number"]))
    assert v.decrypt(_v1("x"), AD_NAME) == "x"


def test_out_dash_writes_csv_and_jsonl_to_stdout_and_refuses_parquet(stack: Stack, tmp_path: Path) -> None:
    parent = stack.submit()
    work(stack, parent)
    runner = CliRunner()
    shown = runner.invoke(cli, ["export", str(parent), "--format", "csv", "--out", "-"])
    assert shown.exit_code == 0, shown.output
    assert not Path("-").exists()
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    assert len(rows) == 6 and all(r["status"] == "passed" for r in rows)
    assert json.loads(shown.stderr)["rows"] == 6  # the summary is not in the file
    assert not ID_NUMBER_RE.search(shown.stdout)
    lines = runner.invoke(cli, ["export", str(parent), "--format", "jsonl", "--out", "-"])
    assert lines.exit_code == 0, lines.output
    assert [json.loads(line)["job_id"] for line in lines.stdout.splitlines()] == [
        int(r["job_id"]) for r in rows
    ]
    refused = runner.invoke(cli, ["export", str(parent), "--format", "parquet", "--out", "-"])
    assert refused.exit_code == 2 and "stdout" in refused.output
