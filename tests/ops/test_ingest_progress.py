"""The ingest progress a CLI bar reads: rows committed and the share of a local file read."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from app.cli_ops import ingest_progress
from db.migrate import upgrade
from idbatch import metrics
from producers.submit import submit_path
from simulator.samples import generate_sample
from tests.conftest import Env


def test_submit_reports_rows_and_the_share_of_the_file_read(env: Env, tmp_path: Path) -> None:
    settings = env()
    upgrade(settings.database_url)
    generate_sample(tmp_path, 30, seed=2, defects=True)
    state = metrics.ingest_progress
    rows_before = state.rows
    seen: list[float | None] = []
    real_committed = state.committed

    def committed(rows: int, queued: int) -> None:  # observe mid-ingest, as the bar's thread does
        real_committed(rows, queued)
        seen.append(state.fraction())

    state.committed = committed  # type: ignore[method-assign]
    try:
        result = submit_path(tmp_path / "manifest.csv", settings=settings, enqueue=False)
    finally:
        del state.committed
    assert state.rows - rows_before == result.rows == 30
    assert seen and all(f is not None and 0 < f <= 1 for f in seen)
    assert state.fraction() is None  # the file is closed and forgotten after the ingest


def test_the_bar_stays_off_when_output_is_not_a_terminal() -> None:
    out = io.StringIO()
    with ingest_progress(Console(file=out, force_terminal=False)):
        metrics.ingest_progress.committed(5, 5)
    assert out.getvalue() == ""
