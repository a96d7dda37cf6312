"""Review findings 2 and 3 (issue 13): masking reveals nothing recoverable; stored keys are keyed."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from sqlalchemy import column, create_engine, table, text

from db.migrate import upgrade
from db.models import Job
from db.reports import build_report
from db.session import session_scope
from idbatch.pii import AD_ID_NUMBER, AD_NAME, mask_id, vault
from producers.keys import idempotency_key
from producers.submit import submit_manifest
from tests.conftest import Env

NUMBER = "310104199003071790"  # synthetic (simulator.cards.make_id_number)


def test_masked_id_shows_no_birth_date_digits_and_at_most_seven_characters() -> None:
    masked = mask_id(NUMBER)
    assert masked.startswith("310") and masked.endswith("1790")
    assert sum(c != "*" for c in masked) == 7
    assert "19900307" not in masked and "0307" not in masked[6:14]


def test_report_samples_do_not_print_the_birth_date_beside_the_masked_number(
    env: Env, tmp_path: Path
) -> None:
    from db.models import Result
    from idbatch.domain import JobStatus, Verdict

    env()
    upgrade(env().database_url)
    result = submit_manifest(
        io.BytesIO(f"external_ref,front_image,id_number\nA,a.jpg,{NUMBER}\n".encode()),
        source="m.csv",
        settings=env(),
        enqueue=False,
    )
    import datetime as dt

    v = vault()
    with session_scope() as session:
        job = session.query(Job).filter(Job.batch_id == result.batch_id).one()
        job.status = JobStatus.PASSED
        session.add(
            Result(
                job_id=job.id,
                provider="acedata",
                verdict=Verdict.PASSED,
                id_number_enc=v.encrypt(NUMBER, AD_ID_NUMBER),
                name_enc=v.encrypt("张三", AD_NAME),
                birth=dt.date(1990, 3, 7),
            )
        )
    with session_scope() as session:
        report = build_report(session, result.batch_id)
    text_out = json.dumps(report.as_dict(), ensure_ascii=False, default=str)
    assert NUMBER not in text_out and "1990-03-07" not in text_out and "张三" not in text_out
    sample = report.samples[0]
    assert sample["birth"] == "1990-**-**"


def test_idempotency_key_cannot_be_recomputed_from_the_database_alone(env: Env) -> None:
    env()
    material = json.dumps(
        ["acedata", {}, "a.jpg", None, "张三", NUMBER], ensure_ascii=False, separators=(",", ":")
    )
    bare = hashlib.sha256(material.encode()).hexdigest()
    key = idempotency_key("acedata", {}, "a.jpg", None, "张三", NUMBER)
    assert key != bare  # the brute-forceable form is gone
    assert key == vault().keyed("idempotency-key", bare)
    from cryptography.fernet import Fernet

    env(pii_key=Fernet.generate_key().decode())
    assert idempotency_key("acedata", {}, "a.jpg", None, "张三", NUMBER) != key  # depends on the key


def test_migration_0005_keys_the_stored_digests(env: Env, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    env(database_url=url)
    upgrade(url, "0004")
    bare = hashlib.sha256(b"some material").hexdigest()
    engine = create_engine(url)
    with engine.begin() as conn:
        values = {
            "batch": {
                "id": 1,
                "source": "s",
                "kind": "backfill",
                "state": "active",
                "provider": "acedata",
                "provider_config": "{}",
                "total_rows": 1,
                "ingest_complete": 1,
            },
            "job": {
                "id": 1,
                "batch_id": 1,
                "row_number": 1,
                "status": "queued",
                "attempt_count": 0,
                "claim_seq": 0,
                "idempotency_key": bare,
            },
        }
        for name, row in values.items():
            conn.execute(table(name, *(column(c) for c in row)).insert().values(**row))
    upgrade(url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT idempotency_key FROM job WHERE id = 1")).scalar()
    engine.dispose()
    assert stored == vault().keyed("idempotency-key", bare)
