"""The report's header says a batch is finished once every job is terminal (issue 18)."""

from __future__ import annotations

import io

from rich.console import Console

from app.render import render_report
from db.migrate import upgrade
from db.reports import build_report
from db.session import session_scope
from producers.submit import submit_manifest
from tests.conftest import Env


def _header(batch_id: int) -> str:
    console = Console(record=True, width=200)
    with session_scope() as session:
        render_report(build_report(session, batch_id), console)
    return console.export_text().splitlines()[0]


def test_header_reads_finished_when_every_row_is_terminal(env: Env) -> None:
    settings = env()
    upgrade(settings.database_url)
    all_bad = submit_manifest(
        io.BytesIO(b"external_ref,front_image\nA,/abs.jpg\nB,file:///x.jpg\n"),
        source="m.csv",
        settings=settings,
        enqueue=False,
    ).batch_id
    open_one = submit_manifest(
        io.BytesIO(b"external_ref,front_image\nA,a.jpg\n"), source="m.csv", settings=settings, enqueue=False
    ).batch_id
    assert "finished" in _header(all_bad)
    assert "active" in _header(open_one)
