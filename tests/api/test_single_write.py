"""The single card's one-statement write (Postgres) stores exactly what the statement-per-row
write stores: the same batch, the same job, and a key record that replays the 202 body."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from db.api_writes import KeyClaim, KeyTaken, _write_statements, ingest_single
from db.migrate import upgrade
from db.models import Batch, Job, utcnow
from db.models_api import IdempotencyRecord
from db.session import engine, session_scope
from idbatch.domain import BatchKind
from producers.api.service import single_answer
from tests.api.conftest import make_tenant
from tests.conftest import Env

pytestmark = pytest.mark.integration

VALUES = {
    "batch_id": 0,
    "row_number": 1,
    "line_number": None,
    "external_ref": "r1",
    "front_image": "https://img.example.com/1.jpg",
    "back_image": None,
    "claimed_name_enc": b"name",
    "claimed_id_enc": b"id",
    "claimed_id_hash": "h",
    "idempotency_key": "k",
    "status": "queued",
}
EVENT = "verification.finished"
SKIP = {"id", "batch_id", "created_at", "updated_at", "enqueued_at"}


def _write(tenant_id: int, key: str, one_statement: bool) -> tuple[int, int, dict[str, Any]]:
    claim = KeyClaim(tenant_id, key, "f" * 64, 3600)
    if one_statement:
        return ingest_single(
            tenant_id, source="s", kind=BatchKind.ADHOC, provider="acedata", config={"a": 1},
            values=VALUES, callback_url=None, event=EVENT, record_id=None, answer=single_answer,
            on_commit=lambda ids: None, claim=claim, accounts=("x",),
        )  # fmt: skip
    batch = {
        "source": "s", "kind": BatchKind.ADHOC, "state": "active", "provider": "acedata",
        "provider_config": {"a": 1}, "total_rows": 1, "ingest_complete": True,
        "created_at": utcnow(), "tenant_id": tenant_id, "accounts": ["x"],
    }  # fmt: skip
    with engine().begin() as conn:
        return _write_statements(conn, batch, VALUES, None, EVENT, None, claim, single_answer)


def _row(model: Any, **where: Any) -> dict[str, Any]:
    with session_scope() as session:
        obj = session.scalars(select(model).filter_by(**where)).one()
        return {c.key: getattr(obj, c.key) for c in model.__table__.columns if c.key not in SKIP}


def test_one_statement_and_three_statements_store_the_same(env: Env, api_db: str) -> None:
    settings = env(database_url=api_db)
    upgrade(settings.database_url)
    tenant = make_tenant("t1")
    one = _write(tenant.id, "one", True)
    three = _write(tenant.id, "three", False)
    assert one[2] == single_answer(one[0], one[1])
    assert _row(Batch, id=one[0]) == _row(Batch, id=three[0])
    assert _row(Job, id=one[1]) == _row(Job, id=three[1])
    rec_one, rec_three = _row(IdempotencyRecord, key="one"), _row(IdempotencyRecord, key="three")
    assert rec_one["response"] == one[2]  # the replay answers with the first 202 body
    assert rec_three["response"] == three[2]
    for rec in (rec_one, rec_three):
        rec.pop("response"), rec.pop("key"), rec.pop("expires_at")
    assert rec_one == rec_three

    # The key again: nothing is written, KeyTaken, and the first job is the only one.
    with pytest.raises(KeyTaken):
        _write(tenant.id, "one", True)
    with session_scope() as session:
        assert len(session.scalars(select(Job.id)).all()) == 2
        assert len(session.scalars(select(Batch.id)).all()) == 2


def test_the_api_opens_its_threads_connections_before_the_first_request(env: Env, api_db: str) -> None:
    from starlette.testclient import TestClient

    from producers.api.app import create_app

    settings = env(database_url=api_db, api_threads="3", api_quota_per_s="0")
    upgrade(settings.database_url)
    engine().dispose()
    assert engine().pool.checkedin() == 0  # type: ignore[attr-defined]
    with TestClient(create_app(settings)):  # runs the lifespan, sends no request
        assert engine().pool.checkedin() == 3  # type: ignore[attr-defined]


def test_warming_a_database_that_refuses_is_not_fatal(env: Env) -> None:
    from db.session import warm_pool
    from tests.api.procs import free_port

    env(database_url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing")
    assert warm_pool(3) == 0  # nothing listens there: no connection, no exception
