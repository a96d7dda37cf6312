"""Review finding 5 (issue 13): s3:// refs only to allowed buckets, at ingest and at call time."""

from __future__ import annotations

import io
import json

import pytest

from idbatch.images import ImageRefError
from idbatch.storage import s3_allowlist, s3_ref_allowed
from idbatch.storage.handoff import s3_image_source
from producers.csv_manifest import ManifestRow, RowError, read_manifest
from tests.conftest import Env


def test_the_allowlist_matches_buckets_and_prefixes() -> None:
    allowed = ("kyc-in", "shared/kyc/")
    assert s3_ref_allowed("s3://kyc-in/a/b.jpg", allowed)
    assert s3_ref_allowed("s3://shared/kyc/x.jpg", allowed)
    assert not s3_ref_allowed("s3://shared/finance/x.jpg", allowed)
    assert not s3_ref_allowed("s3://kyc-in-other/x.jpg", allowed)  # a prefix of the name is not the bucket
    assert s3_ref_allowed("s3://anything/x.jpg", None)


def test_unset_means_any_in_development_and_none_in_production(env: Env) -> None:
    assert s3_allowlist(env()) is None
    assert s3_allowlist(env(s3_allowed=json.dumps(["kyc-in"]))) == ("kyc-in",)


def test_ingest_refuses_a_ref_to_another_bucket() -> None:
    data = b"external_ref,front_image\nA,s3://kyc-in/a.jpg\nB,s3://payroll/salaries.jpg\n"
    rows = list(read_manifest(io.BytesIO(data), s3_allowed=("kyc-in",)))
    assert isinstance(rows[0], ManifestRow)
    assert isinstance(rows[1], RowError) and "bucket not allowed" in rows[1].reason


def test_the_worker_reads_no_object_outside_the_allowlist(env: Env) -> None:
    settings = env(s3_allowed=json.dumps(["kyc-in"]), s3_endpoint_url="http://127.0.0.1:9")  # nothing there
    with pytest.raises(ImageRefError, match="bucket not allowed"):
        s3_image_source(settings, "s3://payroll/salaries.jpg", "acedata")
