"""POST /v1/batches with a manifest by reference: an S3 object (moto's server over real HTTP),
only from the tenant's own buckets; relative image paths resolve next to the manifest."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from db.migrate import upgrade
from db.models import Job
from db.session import session_scope
from idbatch.servers import BackgroundServer
from idbatch.storage.s3 import make_client
from producers.api.app import create_app
from tests.api.conftest import make_tenant
from tests.conftest import Env, fresh_database
from tests.s3.conftest import aws, moto_url  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_api(env: Env, aws: str) -> Iterator[tuple[str, str, str, str]]:  # noqa: F811
    bucket, other = f"acme-{uuid.uuid4().hex[:8]}", f"else-{uuid.uuid4().hex[:8]}"
    with fresh_database("idbatch_apis3") as url:
        settings = env(database_url=url, s3_endpoint_url=aws, api_quota_per_s="0")
        upgrade(settings.database_url)
        s3 = make_client("s3", aws)
        for name in (bucket, other):
            s3.create_bucket(Bucket=name)
            manifest = "external_ref,front_image,id_number\nm1,imgs/1.jpg,\nm2,imgs/2.jpg,12345\n"
            s3.put_object(Bucket=name, Key="in/manifest.csv", Body=manifest.encode())
        tenant = make_tenant("acme", s3_allowed=[bucket])
        with BackgroundServer(create_app(settings)) as server:
            yield server.url, tenant.key, bucket, other


def test_a_manifest_in_the_tenants_bucket_becomes_a_batch(s3_api: tuple[str, str, str, str]) -> None:
    url, key, bucket, other = s3_api
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as c:
        ok = c.post("/v1/batches", json={"manifest": f"s3://{bucket}/in/manifest.csv"})
        refused = c.post("/v1/batches", json={"manifest": f"s3://{other}/in/manifest.csv"})
        missing = c.post("/v1/batches", json={"manifest": f"s3://{bucket}/in/nope.csv"})
    assert ok.status_code == 202, ok.text
    assert (ok.json()["rows"], ok.json()["queued"], ok.json()["rejected"]) == (2, 1, 1)
    assert refused.status_code == 422 and missing.status_code == 422
    with session_scope() as session:
        refs = session.scalars(
            select(Job.front_image).where(Job.batch_id == ok.json()["id"]).order_by(Job.id)
        )
        assert list(refs) == [f"s3://{bucket}/in/imgs/1.jpg", None]
