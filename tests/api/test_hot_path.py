"""The single-card hot path's shortcuts keep their guarantees: the auth cache, coalesced publishing.

Time is moved by an injected clock (never slept on); the publisher's thread is waited for
by its own ``close()``.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import func, select
from starlette.testclient import TestClient

from db.migrate import upgrade
from db.models import Job
from db.session import session_scope
from db.tenants import Principal
from producers.api.app import create_app
from producers.api.gate import AuthCache
from producers.api.linger import LingeringPublisher
from tests.api.conftest import make_tenant
from tests.conftest import Env

P = Principal(1, "t", "k", frozenset({"submit"}), (), (), None, None)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_looked_up_once_per_ttl_and_a_revocation_is_seen_after_it() -> None:
    clock, calls = Clock(), []
    revoked = False

    def load(token: str) -> Principal | None:
        calls.append(token)
        return None if revoked else P

    cache = AuthCache(2.0, clock)
    assert cache.lookup("idb_k_s", load) is P
    clock.now += 1.9
    assert cache.lookup("idb_k_s", load) is P
    assert calls == ["idb_k_s"]  # the second request did not touch the database
    revoked = True
    clock.now += 0.2  # past the TTL of the first lookup
    assert cache.lookup("idb_k_s", load) is None
    assert cache.lookup("idb_k_s", load) is None  # a refusal is never cached as a success
    assert len(calls) == 3


def test_another_secret_for_the_same_key_id_never_hits_the_cached_key() -> None:
    calls: list[str] = []

    def load(token: str) -> Principal | None:
        calls.append(token)
        return P if token == "idb_k_right" else None

    cache = AuthCache(60.0, Clock())
    assert cache.lookup("idb_k_right", load) is P
    assert cache.lookup("idb_k_wrong", load) is None
    assert calls == ["idb_k_right", "idb_k_wrong"]


def test_ttl_zero_looks_up_every_time() -> None:
    calls: list[str] = []

    def load(token: str) -> Principal | None:
        calls.append(token)
        return P

    cache = AuthCache(0, Clock())
    for _ in range(3):
        assert cache.lookup("idb_k_s", load) is P
    assert len(calls) == 3


def test_the_lingering_publisher_sends_every_id_once_in_few_messages_and_flushes_on_close() -> None:
    sent: list[list[int]] = []
    lock = threading.Lock()

    def publish(ids: list[int]) -> None:
        with lock:
            sent.append(list(ids))

    pub = LingeringPublisher(0.05, publish)
    threads = [
        threading.Thread(target=lambda n=n: [pub([n * 100 + i]) for i in range(100)]) for n in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pub.close()
    ids = [i for message in sent for i in message]
    assert sorted(ids) == sorted(n * 100 + i for n in range(4) for i in range(100))
    assert len(sent) < 400  # coalesced, not one message per id
    pub([7])  # after close: published at once, never dropped
    assert sent[-1] == [7]


def test_a_failing_broker_does_not_kill_the_publisher_thread() -> None:
    sent: list[list[int]] = []
    failures = [True]

    def publish(ids: list[int]) -> None:
        if failures and failures.pop():
            raise ConnectionError("broker down")
        sent.append(ids)

    pub = LingeringPublisher(0.001, publish)
    pub([1])
    while failures:  # the first send fails (those rows are left to the sweeper)
        threading.Event().wait(0.001)
    pub([2])
    pub.close()
    assert [2] in sent


def _exchange(
    client: Any, headers: dict[str, str], key_prefix: str
) -> list[tuple[int, str, Any, str | None]]:
    good = {"external_ref": "hp-1", "front_image": "https://example.com/a.jpg"}
    requests: list[tuple[dict[str, str], Any]] = [
        ({"Idempotency-Key": f"{key_prefix}1"}, good),
        ({"Idempotency-Key": f"{key_prefix}1"}, good),  # replay
        ({"Idempotency-Key": f"{key_prefix}1"}, {**good, "external_ref": "hp-2"}),  # 422 reuse
        ({}, {"external_ref": "hp-3"}),  # no front_image
        ({}, {**good, "surprise": 1}),  # extra field
        ({}, {**good, "id_number": "123"}),  # a card the row rules refuse
        ({}, b"{not json"),
        ({}, [good]),
        ({"Authorization": "Bearer idb_nope_nope"}, good),
        ({"Idempotency-Key": "x" * 256}, good),  # FastAPI's header validation
    ]
    out = []
    for extra, body in requests:
        h = {**headers, **extra}
        if isinstance(body, bytes):
            r = client.post(
                "/v1/verifications", content=body, headers={**h, "content-type": "application/json"}
            )
        else:
            r = client.post("/v1/verifications", json=body, headers=h)
        payload = r.json()
        if r.status_code == 202:
            payload = {k: v for k, v in payload.items() if k not in ("id", "batch_id")}
        out.append((r.status_code, r.headers["content-type"], payload, r.headers.get("idempotent-replayed")))
    return out


def test_the_fast_path_answers_exactly_as_the_fastapi_route(env: Env) -> None:
    settings = env(api_quota_per_s="0")
    upgrade(settings.database_url)
    tenant = make_tenant("hot")
    answers = []
    for fast in (True, False):
        app = create_app(settings.model_copy(update={"api_fast_path": fast}))
        with TestClient(app) as client:
            answers.append(_exchange(client, tenant.headers, f"fast{fast}-"))
    assert answers[0] == answers[1]
    codes = [a[0] for a in answers[0]]
    assert codes == [202, 202, 422, 422, 422, 422, 422, 422, 401, 422], answers[0]
    assert answers[0][1][3] == "true"  # the second one was a replay
    with session_scope() as session:  # two accepted cards (one per app), none half-written
        assert session.scalar(select(func.count()).select_from(Job)) == 2
