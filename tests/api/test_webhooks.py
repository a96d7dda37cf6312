"""Webhooks from the durable outbox: derived from finished batches, signed (Standard Webhooks),
retried with backoff while the receiver fails, a stable webhook-id, SSRF-checked, redeliverable."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import select, update

from db import webhooks as outbox
from db.models import Job, utcnow
from db.models_api import WebhookDelivery, WebhookOutbox
from db.session import session_scope
from db.sweeps import finish_batches
from db.tenants import rotate_webhook_secret
from idbatch.domain import JobStatus
from idbatch.servers import BackgroundServer
from tests.api.conftest import Api
from tests.api.receiver import Receiver
from workers.webhooks import backoff_s, deliver

pytestmark = pytest.mark.integration


def _finish_all() -> None:
    with session_scope() as session:
        session.execute(update(Job).values(status=JobStatus.PASSED, finished_at=utcnow()))
    finish_batches(utcnow())


def _due_now() -> None:
    with session_scope() as session:
        session.execute(update(WebhookOutbox).values(next_attempt_at=utcnow() - dt.timedelta(seconds=1)))


def test_backoff_grows_exponentially_with_jitter_and_is_capped(env: object) -> None:
    settings = env(webhook_backoff_base_s="5", webhook_backoff_cap_s="3600")  # type: ignore[operator]
    rng = random.Random(1)
    for attempt, step in ((1, 5), (2, 10), (3, 20), (12, 3600), (40, 3600)):
        delays = [backoff_s(attempt, settings, rng) for _ in range(50)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 40  # jittered, not one instant for every event


def test_a_finished_verification_is_delivered_after_failures_with_one_stable_verified_id(api: Api) -> None:
    receiver = Receiver([api.a.secret], fail_first=3)
    with BackgroundServer(receiver.app()) as hook, api.client(api.a) as c:
        r = c.post(
            "/v1/verifications",
            json={
                "external_ref": "w1",
                "front_image": "https://example.com/a.jpg",
                "callback_url": f"{hook.url}/hook",
            },
        )
        job_id = r.json()["id"]
        assert outbox.emit_events() == []  # not finished yet: nothing to say
        _finish_all()
        (event_id,) = outbox.emit_events()
        assert outbox.emit_events() == []  # emitted once
        results = []
        for _ in range(6):
            results.append(deliver(event_id, api.settings))
            _due_now()
        assert results[:4] == ["retry", "retry", "retry", "delivered"] and set(results[4:]) == {"skipped"}
        assert receiver.failed == 3 and receiver.bad_signatures == 0
        (msg_id,) = receiver.events
        event = receiver.events[msg_id]
        assert event["type"] == "verification.finished" and event["data"]["id"] == job_id
        assert event["data"]["status"] == "passed"
        with session_scope() as session:
            row = session.get(WebhookOutbox, event_id)
            assert (
                row is not None
                and row.status == "delivered"
                and row.webhook_id == msg_id
                and row.attempts == 4
            )
            log = session.scalars(select(WebhookDelivery).where(WebhookDelivery.outbox_id == event_id)).all()
            assert [(d.attempt, d.ok, d.http_status) for d in log] == [
                (1, False, 503),
                (2, False, 503),
                (3, False, 503),
                (4, True, 204),
            ]
        # redeliver: the same id again, signed afresh
        assert outbox.redeliver([event_id]) == [event_id]
        assert deliver(event_id, api.settings) == "delivered"
        assert receiver.deliveries == [msg_id, msg_id]


def test_during_a_secret_rotation_both_secrets_verify(api: Api) -> None:
    new_secret = rotate_webhook_secret(api.a.name, dt.timedelta(hours=1))
    old_only, new_only = Receiver([api.a.secret]), Receiver([new_secret])
    with (
        BackgroundServer(old_only.app()) as h1,
        BackgroundServer(new_only.app()) as h2,
        api.client(api.a) as c,
    ):
        for hook in (h1, h2):
            c.post(
                "/v1/batches",
                json={
                    "cards": [{"external_ref": "r", "front_image": "https://example.com/a.jpg"}],
                    "callback_url": f"{hook.url}/hook",
                },
            )
        _finish_all()
        ids = outbox.emit_events()
        assert [deliver(i, api.settings) for i in ids] == ["delivered", "delivered"]
    assert len(old_only.events) == len(new_only.events) == 1
    assert next(iter(new_only.events.values()))["type"] == "batch.finished"
    # after the overlap the old secret no longer signs
    rotate_webhook_secret(api.a.name, dt.timedelta(seconds=-1))
    with session_scope() as session:
        from db.tenants import signing_secrets

        assert len(signing_secrets(session, api.a.id, utcnow())) == 1


def test_internal_destinations_are_refused_at_submit_and_at_delivery(api: Api) -> None:
    with api.client(api.a) as c:
        r = c.post(
            "/v1/verifications",
            json={
                "external_ref": "s",
                "front_image": "https://example.com/a.jpg",
                "callback_url": "http://169.254.169.254/hook",
            },
        )
        assert r.status_code == 422 and "callback_url" in r.json()["detail"]
        ok = c.post(
            "/v1/verifications",
            json={
                "external_ref": "s",
                "front_image": "https://example.com/a.jpg",
                "callback_url": "https://example.com/hook",
            },
        )
        assert ok.status_code == 202
    _finish_all()
    (event_id,) = outbox.emit_events()
    with session_scope() as session:  # DNS now points it inside (rebinding): refused by resolved address
        session.execute(update(WebhookOutbox).values(url="http://localhost.:9/hook"))
    assert deliver(event_id, api.settings) == "refused"
    with session_scope() as session:
        row = session.get(WebhookOutbox, event_id)
        assert row is not None and row.status == "failed" and "refused" in (row.last_error or "")


def test_an_event_past_its_24h_window_fails_and_redeliver_revives_it(env: object, api: Api) -> None:
    receiver = Receiver([api.a.secret], fail_first=100)
    with BackgroundServer(receiver.app()) as hook, api.client(api.a) as c:
        c.post(
            "/v1/verifications",
            json={
                "external_ref": "g",
                "front_image": "https://example.com/a.jpg",
                "callback_url": f"{hook.url}/hook",
            },
        )
        _finish_all()
        (event_id,) = outbox.emit_events()
        with session_scope() as session:
            session.execute(
                update(WebhookOutbox).values(
                    created_at=utcnow() - dt.timedelta(hours=24) + dt.timedelta(seconds=2)
                )
            )
        assert deliver(event_id, api.settings) == "failed"
        assert outbox.redeliver(failed_only=True) == [event_id]
        receiver.fail_first = 0
        assert deliver(event_id, api.settings) == "delivered"


def test_batch_progress_events_at_the_requested_step_then_batch_finished(api: Api) -> None:
    cards = [{"external_ref": f"p{i}", "front_image": f"https://example.com/{i}.jpg"} for i in range(5)]
    with api.client(api.a) as c:
        r = c.post(
            "/v1/batches",
            json={"cards": cards, "progress_step": 2, "callback_url": "https://example.com/hook"},
        )
    batch_id = r.json()["id"]
    assert outbox.emit_events() == []
    with session_scope() as session:
        first_two = select(Job.id).where(Job.batch_id == batch_id).order_by(Job.id).limit(2).scalar_subquery()
        session.execute(update(Job).where(Job.id.in_(first_two)).values(status=JobStatus.PASSED))
    assert len(outbox.emit_events()) == 1
    assert outbox.emit_events() == []  # the same step is not announced twice
    _finish_all()
    outbox.emit_events()
    with session_scope() as session:
        rows = session.execute(
            select(WebhookOutbox.event, WebhookOutbox.webhook_id).order_by(WebhookOutbox.id)
        ).all()
    assert [e for e, _ in rows] == ["batch.progress", "batch.finished"]
    assert rows[0][1] == f"msg_{batch_id}_batch_progress_2"
