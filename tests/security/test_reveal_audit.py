"""``--reveal`` is audited (issue 13): a row naming who, when and what, and a log line."""

from __future__ import annotations

import io

from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import app
from db.migrate import upgrade
from db.models import AuditEvent
from db.session import session_scope
from producers.submit import submit_manifest
from tests.conftest import Env


def test_report_reveal_writes_an_audit_row(env: Env) -> None:
    settings = env()
    upgrade(settings.database_url)
    batch = submit_manifest(
        io.BytesIO(b"external_ref,front_image\nA,a.jpg\n"), source="m.csv", settings=settings, enqueue=False
    ).batch_id
    runner = CliRunner()
    assert runner.invoke(app, ["report", str(batch), "--json"]).exit_code == 0
    with session_scope() as session:
        assert session.scalars(select(AuditEvent)).all() == []  # masked output is not audited
    result = runner.invoke(
        app, ["report", str(batch), "--json", "--reveal"], env={"IDBATCH_ACTOR": "auditor-7"}
    )
    assert result.exit_code == 0, result.output
    with session_scope() as session:
        (event,) = session.scalars(select(AuditEvent)).all()
    assert (event.actor, event.action, event.batch_id) == ("auditor-7", "report --reveal", batch)
    assert event.at is not None
