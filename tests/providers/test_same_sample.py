"""One synthetic sample through all four providers on the real worker path.

Each provider's batch is processed by ``workers.verify.process_job`` (claim, call over
real HTTP to the simulator, record in SQLite). The recognized fields and the warnings
that every provider is able to report must come out the same whichever provider answered.
Registry checks (name mismatch, unknown ID, other portrait) exist only for the
verification providers (AceData, FaceID): the OCR providers only read the card.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from db.migrate import upgrade
from db.models import Attempt, Job, JobWarning, Result
from db.session import session_scope
from idbatch.domain import JobStatus
from idbatch.pii import AD_ADDRESS, AD_ID_NUMBER, AD_NAME, vault
from idbatch.servers import BackgroundServer
from producers.submit import submit_path
from simulator.app import create_app
from simulator.cards import load_registry
from simulator.samples import generate_sample
from simulator.state import SimState
from tests.conftest import Env
from tests.providers.conftest import ACEDATA_TOKEN, ALL_WARNINGS, APPCODE, SECRET_ID, SECRET_KEY
from workers.runtime import Runtime, make_client
from workers.verify import process_job

PROVIDERS = ("acedata", "tencent_faceid", "tencent_ocr", "aliyun_market")
VERIFYING = {"acedata", "tencent_faceid"}
# Card defects all four protocols can report, and the warning each becomes.
COMMON_WARNINGS = {
    "photocopy",
    "screen_reshoot",
    "temporary_id",
    "photoshopped",
    "low_quality",
    "not_id_card",
}
REGISTRY_WARNINGS = {"name_id_mismatch", "id_not_in_registry", "low_similarity"}
DEFECTS = [
    "photocopy",
    "screen_reshoot",
    "temporary_id",
    "photoshopped",
    "blur",
    "not_id_card",
    "name_mismatch",
    "unknown_id",
    "other_portrait",
    "claim_name",
]
FIELDS = ("name", "sex", "birth", "id_number", "nation", "address")


@pytest.fixture
def stack(env: Env, gateway: str, tmp_path: Path) -> Iterator[tuple[Path, SimState, Any]]:
    sample = tmp_path / "sample"
    generate_sample(sample, 200, seed=11, defect_kinds=DEFECTS)
    # This test compares fields, not rates: one call after another on a quiet box outruns
    # AceData's 50/s and FaceID's 100/s as well as OCR's 20/s, so no quota applies here.
    unlimited = {"acedata": 1e6, "faceid": 1e6, "ocr": 1e6, "aliyun": 1e6}
    state = SimState(registry=load_registry(sample / "registry.jsonl"), seed=2, quotas=unlimited)
    with BackgroundServer(create_app(state)) as sim:
        settings = env(
            acedata_base_url=sim.url,
            acedata_token=ACEDATA_TOKEN,
            faceid_base_url=sim.url + "/tencent/faceid",
            ocr_base_url=sim.url + "/tencent/ocr",
            tencent_secret_id=SECRET_ID,
            tencent_secret_key=SECRET_KEY,
            aliyun_base_url=sim.url,
            aliyun_appcode=APPCODE,
        )
        upgrade(settings.database_url)
        yield sample, state, settings


def _run(sample: Path, settings: Any, provider: str) -> dict[str, dict[str, Any]]:
    batch = submit_path(
        sample / "manifest.csv", settings=settings, provider=provider, config=ALL_WARNINGS, enqueue=False
    )
    with session_scope() as session:
        jobs = session.scalars(
            select(Job.id).where(Job.batch_id == batch.batch_id, Job.status == JobStatus.QUEUED)
        ).all()
    with make_client(settings) as client:
        rt = Runtime(settings=settings, client=client, worker_id=f"{socket.gethostname()}:test")
        for job_id in jobs:
            outcome = process_job(job_id, rt)
            assert outcome.retry_in_s is None, (provider, outcome)
    v = vault()
    out: dict[str, dict[str, Any]] = {}
    with session_scope() as session:
        for job in session.scalars(select(Job).where(Job.batch_id == batch.batch_id)):
            result = session.scalar(select(Result).where(Result.job_id == job.id))
            warnings = set(session.scalars(select(JobWarning.code).where(JobWarning.job_id == job.id)))
            row: dict[str, Any] = {"status": job.status.value, "warnings": warnings}
            if result is not None:
                row.update(
                    name=v.decrypt(result.name_enc, AD_NAME),
                    sex=result.sex,
                    birth=result.birth,
                    id_number=v.decrypt(result.id_number_enc, AD_ID_NUMBER),
                    nation=result.nation,
                    address=v.decrypt(result.address_enc, AD_ADDRESS),
                )
            out[str(job.external_ref)] = row
    return out


def test_the_same_sample_gives_the_same_fields_and_warnings_on_every_provider(
    stack: tuple[Path, SimState, Any],
) -> None:
    sample, state, settings = stack
    runs = {provider: _run(sample, settings, provider) for provider in PROVIDERS}
    refs = runs["acedata"].keys()
    assert all(run.keys() == refs for run in runs.values())
    compared = 0
    for ref in refs:
        rows = {p: runs[p][ref] for p in PROVIDERS}
        common = {p: row["warnings"] & COMMON_WARNINGS for p, row in rows.items()}
        assert len({frozenset(w) for w in common.values()}) == 1, (ref, common)
        recognized = {p: tuple(row.get(f) for f in FIELDS) for p, row in rows.items() if row.get("name")}
        assert len(set(recognized.values())) <= 1, (ref, recognized)
        for provider, row in rows.items():
            if provider not in VERIFYING:
                assert not row["warnings"] & REGISTRY_WARNINGS
        if not (rows["acedata"]["warnings"] & REGISTRY_WARNINGS):
            assert len({row["status"] for row in rows.values()}) == 1, (ref, rows)
            compared += 1
    assert compared >= 180
    # Every warning kind of the sample was seen, and each defect was reported by all four.
    seen = set().union(*(row["warnings"] for run in runs.values() for row in run.values()))
    assert seen >= COMMON_WARNINGS
    assert seen >= REGISTRY_WARNINGS
    # The simulator billed exactly what idbatch recorded as billable, per provider.
    accounts = state.stats_json()["accounts"]
    billed = sum(a["billable"] for a in accounts.values())
    assert billed > 0
    assert all(a["duplicate_billable"] == 0 for a in accounts.values())
    with session_scope() as session:
        recorded = session.scalar(select(func.count()).select_from(Attempt).where(Attempt.billable))
    assert recorded == billed
