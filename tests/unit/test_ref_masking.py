"""An ID number inside a job's external_ref is masked in reports and exports by default.

An upload's key (``kyc/110105194912310029-front.jpg``) or its metadata's external ref may
carry an ID number; the report and the export showed it whole while masking the same
number in the reason beside it (review of issue 19).
"""

from __future__ import annotations

from db.export import COLUMNS, rows
from db.ingest import create_batch
from db.migrate import upgrade
from db.models import Job
from db.reports import build_report
from db.session import session_scope
from idbatch.domain import BatchKind, JobStatus
from idbatch.settings import Settings
from tests.conftest import Env

NUMBER = "11010519491231002X"


def test_an_id_number_in_a_reference_is_masked_unless_revealed(env: Env) -> None:
    settings: Settings = env()
    upgrade(settings.database_url)
    batch = create_batch("sqs:q", BatchKind.EVENTS, "acedata", {})
    with session_scope() as session:
        session.add(
            Job(
                batch_id=batch,
                row_number=1,
                external_ref=f"kyc/{NUMBER}",
                front_image=f"s3://b/kyc/{NUMBER}-front.jpg",
                status=JobStatus.REJECTED,
                last_error="not an image",
            )
        )
    with session_scope() as session:
        masked = build_report(session, batch)
        shown = build_report(session, batch, reveal=True)
        exported = list(rows(session, batch))
        revealed = list(rows(session, batch, reveal=True))
    refs = [r["ref"] for r in masked.rejected]
    assert refs == ["kyc/110***********002X"] and NUMBER not in str(masked)
    assert [r["ref"] for r in shown.rejected] == [f"kyc/{NUMBER}"]
    at = COLUMNS.index("external_ref")
    assert exported[0][at] == "kyc/110***********002X"
    assert revealed[0][at] == f"kyc/{NUMBER}"
