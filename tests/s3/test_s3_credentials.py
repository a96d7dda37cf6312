"""A deployment without AWS credentials: the card is rejected naming the cause, not retried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from idbatch.storage.base import ObjectMissing, StorageUnavailable
from idbatch.storage.s3 import S3Storage, make_client

pytestmark = pytest.mark.integration


def test_no_credentials_is_a_precise_permanent_error(
    s3: Any, bucket: str, aws: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="cards/front.jpg", Body=b"\xff\xd8 not read")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    # nothing else in boto3's chain may find any: no files, no instance metadata service
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    make_client.cache_clear()
    storage = S3Storage(make_client("s3", aws))
    with pytest.raises(ObjectMissing) as err:
        storage.read(f"s3://{bucket}/cards/front.jpg", 1 << 20)
    assert not isinstance(err.value, StorageUnavailable)
    assert "no AWS credentials to read" in str(err.value) and "front.jpg" in str(err.value)
    make_client.cache_clear()
