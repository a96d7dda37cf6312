"""S3 targets that do not exist give one line, exit 2 and no batch, never a traceback."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import app
from db.models import Batch
from db.session import session_scope
from idbatch.settings import Settings

pytestmark = pytest.mark.integration


def _batches() -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Batch)) or 0)


@pytest.mark.parametrize("target", ["s3://no-such-bucket-idbatch/prefix/", "s3://{bucket}/no/such/prefix/"])
def test_a_missing_bucket_or_prefix_is_one_line(s3env: Settings, s3: Any, bucket: str, target: str) -> None:
    before = _batches()
    result = CliRunner().invoke(app, ["submit", target.format(bucket=bucket)])
    assert result.exit_code == 2, result.output
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(
        result.exception, SystemExit
    )
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) <= 2  # rich may wrap a long URL once
    assert _batches() == before
