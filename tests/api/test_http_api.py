"""The HTTP API over real HTTP on Postgres: tenancy, auth, idempotency, problems, limits."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from db.models import Batch, Job
from db.session import session_scope
from db.tenants import claim_idempotency_key, revoke_key
from producers.api.schemas import VerificationIn
from producers.api.service import fingerprint
from tests.api.conftest import Api, make_tenant

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def data_uri(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()


def card(ref: str, image: str, **extra: object) -> dict[str, object]:
    return {"external_ref": ref, "front_image": image, **extra}


def jobs_count() -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def test_a_single_card_is_accepted_with_an_inline_image_and_read_back_masked(
    api: Api, card_images: list[Path]
) -> None:
    with api.client(api.a) as c:
        r = c.post(
            "/v1/verifications", json=card("ref-1", data_uri(card_images[0]), id_number="11010519491231002X")
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        got = c.get(f"/v1/verifications/{job_id}")
    assert got.status_code == 200
    body = got.json()
    assert body["status"] == "queued" and body["external_ref"] == "ref-1" and body["terminal"] is False
    assert "11010519491231002X" not in got.text
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        batch = session.get(Batch, job.batch_id)
        assert batch is not None and batch.tenant_id == api.a.id
        # The inline image was written where the worker resolves it: beside the batch source.
        assert (Path(batch.source).parent / str(job.front_image)).read_bytes() == card_images[0].read_bytes()


def test_another_tenants_ids_answer_404_on_every_route(api: Api) -> None:
    with api.client(api.a) as a, api.client(api.b) as b:
        single = a.post("/v1/verifications", json=card("x", "https://example.com/a.jpg")).json()
        batch = a.post("/v1/batches", json={"cards": [card("y", "https://example.com/b.jpg")]}).json()
        attempts = [
            b.get(f"/v1/verifications/{single['id']}"),
            b.get(f"/v1/verifications/{single['id']}?wait=1"),
            b.get(f"/v1/batches/{single['batch_id']}"),
            b.get(f"/v1/batches/{batch['id']}"),
            b.get(f"/v1/batches/{batch['id']}/results"),
            b.post(f"/v1/batches/{batch['id']}/cancel"),
            b.get("/v1/verifications/999999"),  # a missing id answers exactly the same
        ]
        for r in attempts:
            assert r.status_code == 404, (r.request.url, r.text)
            assert r.headers["content-type"].startswith(PROBLEM)
        missing = attempts[-1].json()
        assert {k: v for k, v in attempts[0].json().items() if k != "detail"} == {
            k: v for k, v in missing.items() if k != "detail"
        }
        # ...and the owner still sees its own, uncancelled
        assert a.get(f"/v1/batches/{batch['id']}").json()["state"] == "active"


def test_a_revoked_key_answers_401_once_the_auth_cache_ttl_passed_and_a_missing_scope_403(
    api: Api,
) -> None:
    # Keys are cached per API process for api_auth_cache_s (producers.api.http.AuthCache):
    # revocation takes effect within that bound. The entry was made by the request before
    # the revocation, so once the TTL has passed (monotonic clock) the key must be refused.
    with api.client(api.b) as b:
        assert b.get("/v1/batches/1").status_code == 404
        assert revoke_key(api.b.key)
        time.sleep(api.settings.api_auth_cache_s)
        r = b.get("/v1/batches/1")
        assert r.status_code == 401 and r.headers["content-type"].startswith(PROBLEM)
        assert "WWW-Authenticate" in r.headers
    with httpx.Client(base_url=api.url) as anon:
        assert anon.post("/v1/verifications", json=card("z", "https://example.com/a.jpg")).status_code == 401
        assert anon.get("/v1/batches/1", headers={"Authorization": "Bearer idb_nope_nope"}).status_code == 401
    reader = make_tenant("reader", scopes=("read",))
    with api.client(reader) as r2:
        assert r2.post("/v1/verifications", json=card("z", "https://example.com/a.jpg")).status_code == 403
    assert jobs_count() == 0


def test_idempotency_key_replays_refuses_another_body_and_a_concurrent_duplicate(api: Api) -> None:
    body = card("idem-1", "https://example.com/a.jpg")
    with api.client(api.a) as c:
        first = c.post("/v1/verifications", json=body, headers={"Idempotency-Key": "k-1"})
        again = c.post("/v1/verifications", json=body, headers={"Idempotency-Key": "k-1"})
        other = c.post(
            "/v1/verifications",
            json=card("idem-2", "https://example.com/a.jpg"),
            headers={"Idempotency-Key": "k-1"},
        )
        # the same key of another tenant is another key
        with api.client(api.b) as b:
            theirs = b.post("/v1/verifications", json=body, headers={"Idempotency-Key": "k-1"})
        # a request still running holds its key: a duplicate meanwhile is 409
        state = claim_idempotency_key(
            api.a.id,
            "k-2",
            fingerprint(
                "POST", "/v1/verifications", VerificationIn.model_validate(body).model_dump(mode="json")
            ),
            60,
        )
        assert state.outcome == "claimed"
        running = c.post("/v1/verifications", json=body, headers={"Idempotency-Key": "k-2"})
    assert first.status_code == 202 and again.status_code == 202
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422 and other.headers["content-type"].startswith(PROBLEM)
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]
    assert running.status_code == 409
    assert jobs_count() == 2


def test_a_bad_single_card_is_refused_whole_with_the_precise_reason(api: Api) -> None:
    with api.client(api.a) as c:
        bad_id = c.post(
            "/v1/verifications", json=card("b1", "https://example.com/a.jpg", id_number="110105194912310021")
        )
        ssrf = c.post("/v1/verifications", json=card("b2", "http://169.254.169.254/latest"))
        local = c.post("/v1/verifications", json=card("b3", "../../etc/passwd"))
        schema = c.post("/v1/verifications", json={"external_ref": "b4"})
        not_image = c.post(
            "/v1/verifications", json=card("b5", "data:image/jpeg;base64," + base64.b64encode(b"no").decode())
        )
    for r in (bad_id, ssrf, local, schema, not_image):
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith(PROBLEM)
    assert "field id_number" in bad_id.json()["errors"][0]["reason"]
    assert "110105194912310021" not in bad_id.text
    assert "SSRF" in ssrf.json()["detail"]
    assert "local paths are not accepted" in local.json()["detail"]
    assert schema.json()["errors"][0]["loc"][-1] == "front_image"
    assert jobs_count() == 0  # nothing half-written


def test_a_batch_keeps_every_card_and_rejects_bad_ones_by_reason(api: Api) -> None:
    cards = [card(f"c{i}", f"https://example.com/{i}.jpg") for i in range(5)]
    cards[2]["id_number"] = "12345"
    cards[4]["front_image"] = "http://10.0.0.1/x.jpg"
    with api.client(api.a) as c:
        r = c.post("/v1/batches", json={"cards": cards})
        assert r.status_code == 202, r.text
        got = r.json()
        assert (got["rows"], got["queued"], got["rejected"]) == (5, 3, 2)
        page1 = c.get(f"/v1/batches/{got['id']}/results", params={"limit": 3}).json()
        page2 = c.get(
            f"/v1/batches/{got['id']}/results", params={"limit": 3, "cursor": page1["next_cursor"]}
        ).json()
        nd = "\n".join(json.dumps(x) for x in cards[:2]) + "\n{not json}\n"
        r2 = c.post("/v1/batches/ndjson", content=nd, headers={"content-type": "application/x-ndjson"})
        cancel = c.post(f"/v1/batches/{got['id']}/cancel")
        after = c.get(f"/v1/batches/{got['id']}").json()
    items = page1["items"] + page2["items"]
    assert [i["external_ref"] for i in items] == [f"c{i}" for i in range(5)] and page2["next_cursor"] is None
    assert "card 3, field id_number" in (items[2]["reason"] or "")
    assert "SSRF" in (items[4]["reason"] or "")
    assert r2.status_code == 202 and (r2.json()["rows"], r2.json()["rejected"]) == (3, 1)
    assert cancel.status_code == 200 and cancel.json()["cancelled_jobs"] == 3
    assert after["counts"] == {"cancelled": 3, "rejected": 2} and after["state"] == "cancelled"


def test_body_limit_413_and_quota_429_with_retry_after(env: object, api: Api) -> None:
    small = env(api_max_body_bytes="2048", api_quota_per_s="1", api_quota_burst="2")  # type: ignore[operator]
    from idbatch.servers import BackgroundServer
    from producers.api.app import create_app

    with (
        BackgroundServer(create_app(small)) as server,
        httpx.Client(base_url=server.url, headers=api.a.headers) as c,
    ):
        big = c.post("/v1/verifications", json=card("big", "data:image/jpeg;base64," + "A" * 4096))
        assert big.status_code == 413 and big.headers["content-type"].startswith(PROBLEM)
        chunks = (b'{"external_ref": "x", "front_image": "' + b"A" * 1024 for _ in range(4))
        chunked = c.post("/v1/verifications", content=chunks, headers={"content-type": "application/json"})
        assert chunked.status_code == 413 and chunked.headers["content-type"].startswith(PROBLEM)
        codes = [c.get("/v1/batches/1") for _ in range(4)]
    assert [r.status_code for r in codes][:2] == [404, 404]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1
    assert all(r.headers["content-type"].startswith(PROBLEM) for r in limited)


def test_wait_long_polls_until_the_job_is_terminal(api: Api) -> None:
    import threading

    from sqlalchemy import update

    from db.models import utcnow
    from idbatch.domain import JobStatus

    with api.client(api.a) as c:
        job_id = c.post("/v1/verifications", json=card("lp", "https://example.com/a.jpg")).json()["id"]
        assert c.get(f"/v1/verifications/{job_id}?wait=0.3").json()["terminal"] is False  # gave up waiting

        def finish() -> None:
            with session_scope() as session:
                session.execute(
                    update(Job).where(Job.id == job_id).values(status=JobStatus.PASSED, finished_at=utcnow())
                )

        timer = threading.Timer(0.5, finish)
        timer.start()
        got = c.get(f"/v1/verifications/{job_id}?wait=20").json()
        timer.join()
    assert got["terminal"] is True and got["status"] == "passed"


def test_ndjson_streams_thousands_of_cards_and_refuses_more_than_the_limit(api: Api) -> None:
    def body(n: int) -> bytes:
        pad = "x" * 60  # > 1 MiB in all: the spooled body rolls over to disk
        return b"".join(
            json.dumps(card(f"nd-{i}-{pad}", f"https://example.com/{i}.jpg")).encode() + b"\n"
            for i in range(n)
        )

    headers = {"content-type": "application/x-ndjson"}
    with api.client(api.a) as c:
        ok = c.post("/v1/batches/ndjson", content=body(9000), headers=headers)
        over = c.post("/v1/batches/ndjson", content=body(10_001).rstrip(b"\n"), headers=headers)
    assert len(body(9000)) > 1024 * 1024
    assert ok.status_code == 202 and (ok.json()["rows"], ok.json()["queued"]) == (9000, 9000), ok.text
    assert over.status_code == 413
    assert jobs_count() == 9000


def test_json_nested_a_thousand_deep_is_a_422_or_a_rejected_line_not_a_500(api: Api) -> None:
    """``json.loads`` raises RecursionError (not ValueError) past ~1,000 levels: the fast
    path answered 500 and uvicorn logged a traceback quoting the body's head and tail."""
    deep = "[" * 3000 + "]" * 3000
    single = '{"external_ref": ' + deep + ', "id_number": "11010519491231002X"}'
    line = json.dumps(card("d1", "https://example.com/a.jpg"))
    headers = {"content-type": "application/x-ndjson"}
    with api.client(api.a) as c:
        one = c.post("/v1/verifications", content=single, headers={"content-type": "application/json"})
        nd = c.post("/v1/batches/ndjson", content=f"{line}\n{single}\n", headers=headers)
    assert one.status_code == 422, one.text
    assert one.headers["content-type"].startswith(PROBLEM)
    assert "11010519491231002X" not in one.text
    assert nd.status_code == 202, nd.text
    assert (nd.json()["rows"], nd.json()["rejected"]) == (2, 1)  # the deep line: a rejected card
