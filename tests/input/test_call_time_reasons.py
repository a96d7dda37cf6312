"""Reasons given when the worker rejects a row carry its row and line, like ingest's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.durability.conftest import Stack, pg_db, stack
from workers.runtime import runtime
from workers.verify import process_job

pytestmark = pytest.mark.integration

__all__ = ["pg_db", "stack"]


def test_a_missing_image_found_at_call_time_names_row_line_and_column(stack: Stack, tmp_path: Path) -> None:
    manifest = stack.manifest.parent / "missing.csv"
    manifest.write_text("external_ref,front_image\nM-1,images/does-not-exist.jpg\n", encoding="utf-8")
    batch = stack.submit(manifest)
    (job,) = stack.jobs(batch)
    process_job(job.id, runtime())
    (job,) = stack.jobs(batch)
    assert job.status.value == "rejected"
    assert (job.last_error or "").startswith("row 1 (line 2), column front_image: ")
