"""A manifest stored in S3: streamed, images resolved next to it, verified end to end."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from db.models import Attempt, Job
from db.session import session_scope
from idbatch.settings import Settings
from producers.csv_manifest import ManifestError
from producers.s3 import submit_s3
from simulator.cards import load_registry
from simulator.samples import generate_sample
from tests.conftest import Env, Simulator
from tests.s3.helpers import drain, report, upload_dir

pytestmark = pytest.mark.integration


def _sample(tmp_path: Path, s3: Any, bucket: str, simulator: Simulator, count: int = 80) -> dict[str, int]:
    rows = generate_sample(tmp_path / "sample", count, seed=11)
    simulator.state.registry = load_registry(tmp_path / "sample" / "registry.jsonl")  # type: ignore[attr-defined]
    upload_dir(s3, bucket, tmp_path / "sample", "drops/2026-07/")
    return dict(Counter(r.expect for r in rows))


def test_manifest_in_s3_is_verified_end_to_end_with_presigned_urls(
    tmp_path: Path, s3env: Settings, env: Env, s3: Any, bucket: str, simulator: Simulator
) -> None:
    expected = _sample(tmp_path, s3, bucket, simulator)
    env(acedata_base_url=simulator.url)
    url = f"s3://{bucket}/drops/2026-07/manifest.csv"

    result = submit_s3(url, settings=s3env, provider="acedata", enqueue=False)
    with session_scope() as session:
        fronts = set(session.scalars(select(Job.front_image).where(Job.batch_id == result.batch_id)))
    assert f"s3://{bucket}/drops/2026-07/images/CARD-000001-front.jpg" in fronts  # resolved next to it
    drain(result.batch_id)

    rep = report(result.batch_id)
    assert rep.accounted
    assert rep.done
    assert rep.jobs == result.rows == sum(expected.values())
    assert rep.counts == expected
    with session_scope() as session:
        handoffs = set(
            session.scalars(
                select(Attempt.handoff).where(
                    Attempt.job_id.in_(select(Job.id).where(Job.batch_id == result.batch_id))
                )
            )
        )
    assert handoffs == {"url"}
    reasons = json.dumps(rep.rejected)
    assert "object not found" in reasons  # the sample's missing file
    assert "not a readable image" in reasons  # the sample's text file named .jpg


def test_inline_handoff_is_configurable_and_recorded_on_the_attempt(
    tmp_path: Path, s3env: Settings, env: Env, s3: Any, bucket: str, simulator: Simulator
) -> None:
    _sample(tmp_path, s3, bucket, simulator, count=3)
    env(acedata_base_url=simulator.url, s3_handoff='{"acedata": "inline"}')
    result = submit_s3(
        f"s3://{bucket}/drops/2026-07/manifest.csv", settings=s3env, provider="acedata", enqueue=False
    )
    drain(result.batch_id)
    with session_scope() as session:
        rows = session.execute(
            select(Attempt.handoff, Attempt.error)
            .join(Job, Job.id == Attempt.job_id)
            .where(Job.batch_id == result.batch_id)
        ).all()
    # AceData takes URLs only: the configured inline hand-off is refused, visibly, per job,
    # before anything is sent: the attempt records that the image never left ("none").
    assert rows
    assert {h for h, _ in rows} == {"none"}
    assert all("URLs only" in (e or "") for _, e in rows)
    assert report(result.batch_id).done


def test_relative_paths_may_not_escape_to_local_files(s3env: Settings, s3: Any, bucket: str) -> None:
    body = "external_ref,front_image\nA,/etc/passwd\nB,../other/x-front.jpg\nC,file:///etc/hosts\nD,ok-front.jpg\n"
    s3.put_object(Bucket=bucket, Key="m/manifest.csv", Body=body.encode())
    result = submit_s3(f"s3://{bucket}/m/manifest.csv", settings=s3env, enqueue=False)
    assert (result.rows, result.queued, result.rejected) == (4, 1, 3)


def test_a_missing_manifest_is_refused_before_any_batch(s3env: Settings, bucket: str) -> None:
    with pytest.raises(ManifestError, match="cannot be read"):
        submit_s3(f"s3://{bucket}/nope/manifest.csv", settings=s3env, enqueue=False)
