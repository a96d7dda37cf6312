"""``idbatch submit s3://bucket/prefix/``: a thousand-object prefix, every object accounted for."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from sqlalchemy import select

from db.models import Batch, Job
from db.session import session_scope
from idbatch.domain import JobStatus
from idbatch.settings import Settings
from producers.s3 import submit_s3
from simulator.cards import Truth, make_identity, render
from tests.conftest import Env, Simulator
from tests.s3.helpers import drain, report

pytestmark = pytest.mark.integration


def _card_images() -> tuple[bytes, bytes]:
    from faker import Faker

    rng = random.Random(5)
    ident = make_identity(rng, Faker("zh_CN"))
    return render(Truth("front", ident, []), rng=rng), render(Truth("back", ident, []), rng=rng)


def _populate(s3: Any, bucket: str, limit: int) -> dict[str, int]:
    front, back = _card_images()
    plan: list[tuple[str, bytes]] = []
    for i in range(400):
        plan += [
            (f"backfill/p{i // 100}/C{i:04d}-front.jpg", front),
            (f"backfill/p{i // 100}/C{i:04d}-back.jpg", back),
        ]
    plan += [(f"backfill/客户/张伟-{i:02d}-front.jpg", front) for i in range(60)]
    plan += [(f"backfill/émoji 📷/x{i}-front.PNG", front) for i in range(20)]
    plan += [(f"backfill/notes/n{i}.txt", b"not a card\n") for i in range(100)]
    plan += [(f"backfill/empty/E{i}-front.jpg", b"") for i in range(30)]
    plan += [(f"backfill/orphans/O{i}-back.jpg", back) for i in range(20)]
    plan += [(f"backfill/fake/F{i}-front.jpg", b"plain text under an image name") for i in range(10)]
    plan += [("backfill/folder/", b"")]
    plan += [(f"backfill/big/B{i}-front.jpg", b"\xff" * (limit + 1)) for i in range(5)]
    plan += [("elsewhere/Z-front.jpg", front)]  # outside the prefix: not part of the batch
    for key, body in plan:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return {"objects": len(plan) - 1, "jobs": 400 + 60 + 20 + 100 + 30 + 20 + 10 + 1 + 5}


def test_prefix_scan_accounts_for_every_object(
    s3env: Settings, env: Env, s3: Any, bucket: str, simulator: Simulator
) -> None:
    limit = 200_000
    settings = env(image_max_bytes=limit, acedata_base_url=simulator.url)
    expected = _populate(s3, bucket, limit)
    prefix = f"s3://{bucket}/backfill/"

    result = submit_s3(prefix, settings=settings, provider="acedata", enqueue=False)

    assert result.rows == expected["jobs"]
    assert (result.queued, result.rejected) == (400 + 60 + 20 + 10, 100 + 30 + 20 + 1 + 5)
    listed = {
        f"s3://{bucket}/{o['Key']}"
        for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="backfill/")
        for o in p["Contents"]
    }
    with session_scope() as session:
        rows = session.execute(
            select(Job.external_ref, Job.front_image, Job.back_image, Job.status).where(
                Job.batch_id == result.batch_id
            )
        ).all()
        kind = session.scalar(select(Batch.source).where(Batch.id == result.batch_id))
    named = [u for r in rows for u in (r.front_image, r.back_image) if u]
    assert len(named) == len(set(named)) == len(listed) == expected["objects"]  # each object: one job
    assert set(named) == listed
    assert kind == prefix
    by_ref = {r.external_ref: r for r in rows}
    assert by_ref["p1/C0100"].back_image == f"s3://{bucket}/backfill/p1/C0100-back.jpg"
    assert by_ref["客户/张伟-07"].status == JobStatus.QUEUED
    assert by_ref["émoji 📷/x3"].status == JobStatus.QUEUED

    drain(result.batch_id, timeout_s=300)
    rep = report(result.batch_id)
    assert rep.accounted
    assert rep.done
    assert rep.jobs == expected["jobs"]
    assert rep.counts[JobStatus.REJECTED.value] == 100 + 30 + 20 + 1 + 5 + 10
    reasons = {r["ref"]: r["reason"] for r in rep.rejected}
    assert "matches no naming convention" in reasons["notes/n7.txt"]
    assert "empty (0 bytes)" in reasons["empty/E3"]
    assert "back image without a front" in reasons["orphans/O1"]
    assert "over the 200000-byte limit" in reasons["big/B0"]
    assert "not a readable image" in reasons["fake/F2"]  # found by the worker, not the listing
    assert "folder placeholder" in reasons["folder/"]
    assert json.dumps(rep.as_dict(), default=str)


def test_a_sidecar_manifest_pairs_and_claims_before_the_convention(
    s3env: Settings, s3: Any, bucket: str
) -> None:
    front, back = _card_images()
    for key in ("scan/a.jpg", "scan/b.jpg", "scan/K1-front.jpg", "scan/K1-back.jpg", "scan/junk.bin"):
        s3.put_object(Bucket=bucket, Key=key, Body=front if "back" not in key else back)
    sidecar = "external_ref,front_image,back_image,name\nSIDE-1,a.jpg,b.jpg,张三\n"
    s3.put_object(Bucket=bucket, Key="scan/_manifest.csv", Body=sidecar.encode())

    result = submit_s3(f"s3://{bucket}/scan/", settings=s3env, enqueue=False)

    with session_scope() as session:
        rows = {
            r.external_ref: r
            for r in session.execute(
                select(
                    Job.external_ref, Job.front_image, Job.back_image, Job.status, Job.claimed_name_enc
                ).where(Job.batch_id == result.batch_id)
            )
        }
    assert set(rows) == {"SIDE-1", "K1", "junk.bin"}
    assert rows["SIDE-1"].back_image == f"s3://{bucket}/scan/b.jpg"
    assert rows["SIDE-1"].claimed_name_enc
    assert rows["K1"].status == JobStatus.QUEUED
    assert rows["junk.bin"].status == JobStatus.REJECTED
