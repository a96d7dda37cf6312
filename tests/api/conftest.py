"""Fixtures for the HTTP API: a migrated Postgres database, tenants, the API over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from db.migrate import upgrade
from db.tenants import create_tenant
from idbatch.servers import BackgroundServer
from idbatch.settings import Settings
from producers.api.app import create_app
from simulator.samples import generate_sample
from tests.conftest import Env, fresh_database


@dataclass
class Tenant:
    id: int
    name: str
    key: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Api:
    url: str
    settings: Settings
    a: Tenant
    b: Tenant

    def client(self, tenant: Tenant | None = None) -> httpx.Client:
        headers = tenant.headers if tenant is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def make_tenant(name: str, **kwargs: object) -> Tenant:
    tenant_id, key, secret = create_tenant(name, **kwargs)  # type: ignore[arg-type]
    return Tenant(tenant_id, name, key, secret)


@pytest.fixture
def api_db() -> Iterator[str]:
    with fresh_database("idbatch_api") as url:
        yield url


@pytest.fixture
def api(env: Env, api_db: str) -> Iterator[Api]:
    """The API (no workers: jobs stay queued) for two tenants, over real HTTP on loopback."""
    settings = env(
        database_url=api_db,
        api_quota_per_s="1000",
        api_quota_burst="1000",
        allowed_private_hosts='["127.0.0.1"]',
        api_auth_cache_s="0.3",  # short, so the revocation test waits it out (not the 2 s default)
    )
    upgrade(settings.database_url)
    a = make_tenant("tenant-a", scopes=("submit", "read", "reveal"))
    b = make_tenant("tenant-b")
    with BackgroundServer(create_app(settings)) as server:
        yield Api(server.url, settings, a, b)


@pytest.fixture(scope="session")
def card_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A few synthetic cards (front images) from the project's own generator."""
    folder = tmp_path_factory.mktemp("cards")
    generate_sample(folder, 6, seed=5, defects=False)
    return sorted(p for p in folder.rglob("*front*") if p.suffix in (".jpg", ".png"))
