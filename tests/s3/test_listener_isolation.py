"""Review findings 5 and 7 (issue 13): one malformed SQS message poisons itself only, and
events are trusted only from the listener's buckets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from db.models import Job
from db.session import session_scope
from idbatch.domain import JobStatus
from idbatch.settings import Settings
from idbatch.storage.s3 import make_client
from producers.events import EventListener, PoisonMessage, parse_notification
from tests.conftest import Env
from tests.s3.test_events import queues

pytestmark = pytest.mark.integration

__all__ = ["queues"]


def _event(bucket: str, key: str, size: Any = 1234) -> str:
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": size, "eTag": "abc"}},
    }
    return json.dumps({"Records": [record]})


def test_hostile_messages_poison_themselves_and_the_valid_one_becomes_a_job(
    s3env: Settings, env: Env, bucket: str, queues: tuple[str, str]
) -> None:
    url, _ = queues
    settings = env(events_buckets=json.dumps([bucket]), events_pair_window_s=0)
    sqs = make_client("sqs", settings.sqs_endpoint_url)
    sqs.purge_queue(QueueUrl=url)  # the bucket notification's test event
    bodies = [
        _event(bucket, "inbox/ok-front.jpg"),
        _event(bucket, "inbox/huge-front.jpg").replace("1234", "1e400"),  # size: infinity
        "[" * 100_000 + "]" * 100_000,  # nesting deeper than any parser's stack
        _event("someone-elses-bucket", "secret/x-front.jpg"),
        '{"Records": "not a list"}',
    ]
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]
    )
    listener = EventListener(settings, queue_url=url, publish=lambda ids: None)
    total = listener.run(until_idle=True, wait_s=1)
    assert total.received == len(bodies) and total.poison == len(bodies) - 1
    with session_scope() as session:
        jobs = session.scalars(select(Job).where(Job.batch_id == listener.batch_id)).all()
    queued = [j for j in jobs if j.status == JobStatus.QUEUED]
    assert [j.external_ref for j in queued] == ["inbox/ok"]  # the card's <ref> (issue 19)
    assert len(jobs) == len(bodies)  # every message accounted for, as a job
    reasons = " ".join(j.last_error or "" for j in jobs)
    assert ("someone-elses-bucket" in reasons and "RecursionError" in reasons) or "not JSON" in reasons


def test_events_from_another_bucket_are_poison() -> None:
    with pytest.raises(PoisonMessage, match="does not serve"):
        parse_notification(_event("other", "k.jpg"), frozenset({"mine"}))
    assert parse_notification(_event("mine", "k.jpg"), frozenset({"mine"}))[0].key == "k.jpg"
