"""Shared fixtures.

Integration tests use the real services of this machine over real connections. A
missing service makes them *fail* (never skip): a green run must mean they ran.
Every test run gets its own Postgres database and Redis DB index + queue names, so
concurrent runs on one machine do not see each other's jobs.
"""

from __future__ import annotations

import os
import random
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from app.embedded import apply_env
from idbatch.servers import BackgroundServer
from idbatch.settings import Settings

PG_ADMIN = os.environ.get("IDBATCH_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = os.environ.get("IDBATCH_TEST_REDIS", "redis://127.0.0.1:6379")
TEST_PII_KEY = "k3Qk0m9o0nQyX1y4e5Vv2y4j4h2m0p3qZ9a8b7c6d5E="  # a fixed Fernet key for tests only
SIM_ACEDATA_TOKEN = "sim-acedata-token"

Env = Callable[..., Settings]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """Set IDBATCH_* settings for one test (SQLite in tmp by default) and rebuild caches."""
    base = {
        "IDBATCH_DATA_DIR": str(tmp_path / "data"),
        "IDBATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'test.db'}",
        "IDBATCH_BROKER_URL": "memory://",
        "IDBATCH_QUEUE": f"idbatch.test.{uuid.uuid4().hex[:8]}",
        "IDBATCH_PII_KEY": TEST_PII_KEY,
        "IDBATCH_BACKOFF_BASE_S": "0.05",
        "IDBATCH_BACKOFF_CAP_S": "0.5",
        "IDBATCH_ACEDATA_TOKEN": SIM_ACEDATA_TOKEN,
    }
    for key in [k for k in os.environ if k.startswith("IDBATCH_")]:
        monkeypatch.delenv(key)
    for key, value in base.items():
        monkeypatch.setenv(key, value)

    def configure(**values: str) -> Settings:
        for key, value in values.items():
            monkeypatch.setenv(f"IDBATCH_{key.upper()}", str(value))
        return apply_env({})

    configure()
    yield configure
    for key in [k for k in os.environ if k.startswith("IDBATCH_")]:
        monkeypatch.delenv(key)
    apply_env({})


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new Postgres database (SQLAlchemy URL), dropped afterwards; fails if Postgres is down."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:  # pragma: no cover - service missing
        pytest.fail(f"PostgreSQL is required for integration tests and is not reachable: {exc}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh Postgres database for this test run."""
    with fresh_database("idbatch_t") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis DB index for this run (1-15, random) so concurrent runs stay apart."""
    url = f"{REDIS_HOST}/{random.randint(1, 15)}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.exceptions.ConnectionError as exc:  # pragma: no cover - service missing
        pytest.fail(f"Redis is required for integration tests and is not reachable: {exc}")
    return url


@dataclass
class Simulator:
    url: str
    state: object  # simulator.state.SimState

    def stats(self, account: str = f"acedata:{SIM_ACEDATA_TOKEN}") -> dict[str, object]:
        accounts = self.state.stats_json()["accounts"]  # type: ignore[attr-defined]
        return dict(accounts.get(account, {}))


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """The provider simulator over real HTTP on a loopback port."""
    from simulator.app import create_app
    from simulator.state import SimState

    state = SimState(seed=1)
    with BackgroundServer(create_app(state, acedata_tokens={SIM_ACEDATA_TOKEN})) as server:
        yield Simulator(server.url, state)


@pytest.fixture
def gateway(env: Env) -> Iterator[str]:
    from idbatch.gateway import create_app

    settings = env()
    roots = [Path(tempfile.gettempdir())]  # every test's images live under tmp_path
    with BackgroundServer(create_app(settings.gateway_secret.get_secret_value().encode(), roots)) as server:
        env(gateway_url=server.url)
        yield server.url
