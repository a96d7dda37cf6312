"""The Celery-native entry ``idbatch.submit``: the same validation, ingest and idempotency as HTTP."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db.models import Batch, Job
from db.session import session_scope
from dispatch.app import SUBMIT
from producers.api.entry import submit_payload
from tests.api.conftest import Api

pytestmark = pytest.mark.integration

CARD = {"external_ref": "celery-1", "front_image": "https://example.com/a.jpg"}


def test_the_task_body_ingests_once_per_key_and_refuses_a_reused_key(api: Api) -> None:
    first = submit_payload("tenant-a", "k1", CARD)
    again = submit_payload("tenant-a", "k1", CARD)
    other = submit_payload("tenant-a", "k1", {**CARD, "external_ref": "celery-2"})
    bad = submit_payload("tenant-a", "k2", {**CARD, "id_number": "110105194912310021"})
    nobody = submit_payload("no-such-tenant", "k3", CARD)
    assert first["status"] == 202 and again == {**first, "replayed": True}
    assert other["status"] == 422 and other["error"] == "mismatch"
    assert bad["status"] == 422 and "field id_number" in bad["detail"]
    assert nobody["status"] == 404
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1
        job = session.get(Job, first["id"])
        assert job is not None
        batch = session.get(Batch, job.batch_id)
        assert batch is not None and batch.tenant_id == api.a.id
    # the HTTP view of the tenant sees it; the other tenant does not
    with api.client(api.a) as a, api.client(api.b) as b:
        assert a.get(f"/v1/verifications/{first['id']}").status_code == 200
        assert b.get(f"/v1/verifications/{first['id']}").status_code == 404


def test_every_worker_process_serves_the_entry_task() -> None:
    from workers.celery_app import app

    app.loader.import_default_modules()
    assert SUBMIT in app.tasks
    assert "idbatch.webhooks.deliver" in app.tasks and "idbatch.webhooks.sweep" in app.tasks


def test_the_entry_task_needs_no_http_stack() -> None:
    """Workers install without the ``api`` extra: the entry they import must not pull FastAPI in."""
    import subprocess
    import sys

    code = "import sys, producers.api.entry, workers.tasks; assert 'fastapi' not in sys.modules"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_celery_caller_finds_its_job_by_its_key_and_nobody_else_does(api: Api) -> None:
    first = submit_payload("tenant-a", "order-9", CARD)
    with api.client(api.a) as a, api.client(api.b) as b:
        mine = a.get("/v1/submissions/order-9", params={"source": "celery"})
        http_side = a.get("/v1/submissions/order-9")  # the HTTP key space is another
        theirs = b.get("/v1/submissions/order-9", params={"source": "celery"})
        posted = a.post("/v1/verifications", json=CARD, headers={"Idempotency-Key": "h-1"}).json()
        found = a.get("/v1/submissions/h-1")
    assert mine.status_code == 200 and mine.json()["response"]["id"] == first["id"]
    assert http_side.status_code == 404 and theirs.status_code == 404
    assert found.json()["status"] == 202 and found.json()["response"]["id"] == posted["id"]
