"""S3/SQS integration fixtures: moto's server mode over real HTTP, real boto3 clients.

The server is started by the tests (no AWS account, no network); everything else is the
production path: boto3 default credential chain from AWS_* variables, the endpoint from
IDBATCH_S3_ENDPOINT_URL / IDBATCH_SQS_ENDPOINT_URL, Postgres from ``pg_url``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from db.migrate import upgrade
from idbatch.settings import Settings
from idbatch.storage.s3 import make_client
from tests.conftest import Env
from tests.s3.moto_sqs import serialize_sqs


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    # moto's werkzeug logs every request at INFO, in this process: under idbatch's root
    # handler those lines would land in the CLI output the tests read.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    serialize_sqs()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, moto_url: str) -> str:
    """Standard AWS settings, as an operator would export them."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    make_client.cache_clear()
    return moto_url


@pytest.fixture
def s3env(env: Env, aws: str, pg_url: str) -> Settings:
    settings = env(database_url=pg_url, s3_endpoint_url=aws, sqs_endpoint_url=aws)
    upgrade(settings.database_url)
    return settings


@pytest.fixture
def s3(s3env: Settings) -> Any:
    return make_client("s3", s3env.s3_endpoint_url)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"kyc-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name
