"""What API processes share through Redis: revocation at once, one quota per tenant; and races.

"Processes" are two app instances (``create_app`` twice, each its own key cache, quota
buckets and Redis client) served over real HTTP: nothing is shared between them but
Postgres and Redis, exactly as between two ``idbatch api`` processes. The key cache's TTL
is a minute, so what the tests see is the epoch, never the TTL running out.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest
import redis
from sqlalchemy import func, select

from db.api_shared import SharedState
from db.migrate import upgrade
from db.models import Batch, Job
from db.session import session_scope
from db.tenants import Principal, revoke_key
from idbatch.domain import BatchKind
from idbatch.servers import BackgroundServer
from idbatch.settings import Settings
from producers.api.app import create_app
from producers.api.gate import Gate
from producers.api.http import HTTPProblem
from tests.api.conftest import Tenant, make_tenant
from tests.conftest import Env

pytestmark = pytest.mark.integration

CARD = {"external_ref": "r-1", "front_image": "https://example.com/a.jpg"}


@dataclass
class Two:
    urls: list[str]
    settings: Settings

    def client(self, n: int, tenant: Tenant) -> httpx.Client:
        return httpx.Client(base_url=self.urls[n], headers=tenant.headers, timeout=30)


def _two_apps(env: Env, api_db: str, redis_url: str, shared: str) -> Iterator[Two]:
    settings = env(
        database_url=api_db,
        api_shared_url=shared,
        api_shared_prefix=f"idbatch:test:{uuid.uuid4().hex[:8]}",
        api_auth_cache_s="60",
        api_quota_per_s="1000",
        api_quota_burst="1000",
    )
    upgrade(settings.database_url)
    with ExitStack() as stack:
        servers = [stack.enter_context(BackgroundServer(create_app(settings))) for _ in range(2)]
        yield Two([s.url for s in servers], settings)


@pytest.fixture
def two(env: Env, api_db: str, redis_url: str) -> Iterator[Two]:
    yield from _two_apps(env, api_db, redis_url, redis_url)


@pytest.fixture
def two_unshared(env: Env, api_db: str, redis_url: str) -> Iterator[Two]:
    yield from _two_apps(env, api_db, redis_url, "off")


def test_a_revoked_key_is_refused_by_the_very_next_request_in_every_api_process(two: Two) -> None:
    t = make_tenant("acme")
    with two.client(0, t) as a, two.client(1, t) as b:
        for c in (a, b, a, b):  # both processes have the key cached (TTL 60 s)
            assert c.get("/v1/batches/1").status_code == 404
        assert revoke_key(t.key)
        ra, rb = a.get("/v1/batches/1"), b.get("/v1/batches/1")  # no sleep
    assert ra.status_code == rb.status_code == 401
    assert "WWW-Authenticate" in ra.headers
    # Another tenant's keys are looked up again once (the epoch is global) and still work.
    other = make_tenant("other")
    with two.client(0, other) as c:
        assert c.post("/v1/verifications", json=CARD).status_code == 202


def test_a_tenant_quota_is_one_bucket_across_api_processes(two: Two) -> None:
    # 3 requests of burst, then 0.1/s: six requests alternating between the two processes
    # get three through, whoever serves them; the rest 429 with Retry-After.
    t = make_tenant("slow", quota_per_s=0.1)
    gate_settings = two.settings.model_copy(update={"api_quota_burst": 3.0})
    with ExitStack() as stack:
        urls = [stack.enter_context(BackgroundServer(create_app(gate_settings))).url for _ in range(2)]
        codes, retry = [], []
        for i in range(6):
            with httpx.Client(base_url=urls[i % 2], headers=t.headers, timeout=30) as c:
                r = c.get("/v1/batches/1")
            codes.append(r.status_code)
            if r.status_code == 429:
                retry.append(int(r.headers["Retry-After"]))
    assert codes.count(404) == 3 and codes.count(429) == 3, codes
    assert all(s >= 1 for s in retry)


def test_without_shared_state_each_process_has_its_own_bucket(two_unshared: Two) -> None:
    """The baseline of the test above: per-process buckets let N processes through N times."""
    t = make_tenant("slow", quota_per_s=0.1)
    settings = two_unshared.settings.model_copy(update={"api_quota_burst": 3.0})
    with ExitStack() as stack:
        urls = [stack.enter_context(BackgroundServer(create_app(settings))).url for _ in range(2)]
        codes = []
        for i in range(6):
            with httpx.Client(base_url=urls[i % 2], headers=t.headers, timeout=30) as c:
                codes.append(c.get("/v1/batches/1").status_code)
    assert codes.count(404) == 6, codes


P = Principal(7, "t", "k", frozenset({"submit"}), (), (), None, None)


def _counting_gate(settings: Settings, shared: SharedState | None) -> tuple[Gate, list[str], list[bool]]:
    calls: list[str] = []
    revoked = [False]

    def load(token: str) -> Principal | None:
        calls.append(token)
        return None if revoked[0] else P

    return Gate(settings, shared, load=load), calls, revoked


def test_the_gate_reads_the_database_once_per_key_until_the_epoch_moves(env: Env, redis_url: str) -> None:
    settings = env(api_auth_cache_s="60", api_quota_per_s="0")
    shared = SharedState(redis.Redis.from_url(redis_url), f"idbatch:test:{uuid.uuid4().hex[:8]}")
    gate, calls, revoked = _counting_gate(settings, shared)
    for _ in range(20):
        assert gate.admit("idb_k_s") is P
    assert len(calls) == 1  # 20 requests, one key lookup
    revoked[0] = True
    shared.bump()  # what revoke_key does after its commit
    with pytest.raises(HTTPProblem) as refused:
        gate.admit("idb_k_s")
    assert refused.value.status == 401 and len(calls) == 2


def test_with_redis_down_every_request_looks_the_key_up_and_quotas_are_per_process(env: Env) -> None:
    settings = env(api_auth_cache_s="60", api_quota_per_s="1", api_quota_burst="2")
    dead = SharedState(redis.Redis(port=1, socket_connect_timeout=0.2, socket_timeout=0.2), "x")
    gate, calls, revoked = _counting_gate(settings, dead)
    assert gate.admit("idb_k_s") is P and gate.admit("idb_k_s") is P
    assert len(calls) == 2  # nothing cached is trusted while Redis cannot say the epoch
    with pytest.raises(HTTPProblem) as limited:
        gate.admit("idb_k_s")  # the local bucket (burst 2) still limits
    assert limited.value.status == 429
    revoked[0] = True
    with pytest.raises(HTTPProblem) as refused:
        gate.admit("idb_k_s")
    assert refused.value.status == 401


def test_concurrent_twins_with_one_idempotency_key_never_answer_500_and_make_one_job(two: Two) -> None:
    t = make_tenant("twins")
    codes: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def post(n: int, key: str) -> None:
        with two.client(n % 2, t) as c:
            start.wait()
            r = c.post("/v1/verifications", json=CARD, headers={"Idempotency-Key": key})
        with lock:
            codes.append(r.status_code)

    for round_ in range(3):  # three rounds of 16 simultaneous twins, each round its own key
        codes.clear()
        threads = [threading.Thread(target=post, args=(n, f"same-{round_}")) for n in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        # 503 only if Postgres refused a connection (max_connections is shared with every
        # test run on the box): not the key race; a 500 never.
        assert set(codes) <= {202, 409, 503}, codes
        assert 202 in codes
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 3  # one job per key


def test_a_batch_post_is_kind_api_and_a_single_post_adhoc(two: Two) -> None:
    t = make_tenant("kinds")
    with two.client(0, t) as c:
        single = c.post("/v1/verifications", json=CARD).json()
        batch = c.post("/v1/batches", json={"cards": [CARD, CARD, CARD]}).json()
        ndjson = c.post(
            "/v1/batches/ndjson",
            content=b'{"external_ref": "n", "front_image": "https://example.com/n.jpg"}\n',
            headers={"content-type": "application/x-ndjson"},
        ).json()
    with session_scope() as session:
        kinds = dict(session.execute(select(Batch.id, Batch.kind)).tuples().all())
    assert kinds[single["batch_id"]] == BatchKind.ADHOC
    assert kinds[batch["id"]] == kinds[ndjson["id"]] == BatchKind.API


def test_a_database_that_refuses_connections_answers_503_with_retry_after(env: Env) -> None:
    """What the one end-to-end 500 was: Postgres' max_connections reached by other clients."""
    from starlette.testclient import TestClient

    settings = env(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none", api_shared_url="off")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        headers = {"Authorization": "Bearer idb_abc_secret"}
        single = client.post("/v1/verifications", json=CARD, headers=headers)  # the fast path
        batch = client.get("/v1/batches/1", headers=headers)  # a FastAPI route
    for r in (single, batch):
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1"
        assert r.headers["content-type"].startswith("application/problem+json")
