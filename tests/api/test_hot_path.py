"""The single-card hot path's shortcuts keep their guarantees: the auth cache, coalesced publishing.

Time is moved by an injected clock (never slept on); the publisher's thread is waited for
by its own ``close()``.
"""

from __future__ import annotations

import threading

from db.tenants import Principal
from producers.api.http import AuthCache
from producers.api.linger import LingeringPublisher

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
