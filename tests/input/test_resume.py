"""An ingest that stops half-way says so, loses nothing, and resumes without a hole."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from db.models import Batch, Job
from db.reports import build_report
from db.session import session_scope
from producers import submit as submit_mod
from producers.submit import CHUNK, IngestInterrupted, submit_manifest
from tests.conftest import Env
from tests.input.test_hostile_manifests import databases

pytestmark = pytest.mark.integration

__all__ = ["databases"]


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_an_interrupted_ingest_resumes_from_the_last_committed_row(
    env: Env, databases: dict[str, str], backend: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = env(database_url=databases[backend])
    rows = CHUNK * 2 + 7
    data = ("external_ref,front_image\n" + "".join(f"R-{i},a.jpg\n" for i in range(rows))).encode()
    real = submit_mod.default_inserter
    calls = {"n": 0}

    def failing(session: Any) -> Any:
        inserter = real(session)

        def insert(session: Any, values: list[dict[str, Any]]) -> list[int]:
            calls["n"] += 1
            if calls["n"] == 2:  # the database goes away during the second chunk
                raise OperationalError("COPY", None, Exception("server closed the connection"))
            return inserter(session, values)

        return insert

    monkeypatch.setattr(submit_mod, "default_inserter", failing)
    with pytest.raises(IngestInterrupted) as stopped:
        submit_manifest(io.BytesIO(data), source="big.csv", settings=settings, enqueue=False)
    batch_id = stopped.value.batch_id
    with session_scope() as session:
        batch = session.get_one(Batch, batch_id)
        assert batch.ingest_complete is False  # the batch says it is incomplete
        assert len(session.scalars(select(Job.id).where(Job.batch_id == batch_id)).all()) == CHUNK

    monkeypatch.setattr(submit_mod, "default_inserter", real)
    result = submit_manifest(
        io.BytesIO(data), source="big.csv", settings=settings, enqueue=False, resume=batch_id
    )
    assert result.batch_id == batch_id
    with session_scope() as session:
        numbers = session.scalars(select(Job.row_number).where(Job.batch_id == batch_id)).all()
        report = build_report(session, batch_id)
    assert sorted(numbers) == list(range(1, rows + 1))  # every row once, no hole
    assert report.total_rows == rows and report.accounted


def test_resuming_a_complete_batch_is_refused(env: Env, databases: dict[str, str]) -> None:
    settings = env(database_url=databases["sqlite"])
    data = b"external_ref,front_image\nA,a.jpg\n"
    done = submit_manifest(io.BytesIO(data), source="a.csv", settings=settings, enqueue=False)
    with pytest.raises(ValueError, match="nothing to resume"):
        submit_manifest(
            io.BytesIO(data), source="a.csv", settings=settings, enqueue=False, resume=done.batch_id
        )
