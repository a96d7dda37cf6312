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
        # what the ledger cannot store: a NUL, a lone surrogate (JSON escapes), a 200-byte eTag
        _event(bucket, "inbox/nul\x00x-front.jpg"),
        _event(bucket, "inbox/sur\udc80x-front.jpg"),
        _event(bucket, "inbox/tag-front.jpg").replace('"abc"', '"' + "e" * 200 + '"'),
        # one message, three records: the foreign one is refused, the other two are cards
        json.dumps(
            {
                "Records": [
                    json.loads(_event(bucket, "inbox/m1-front.jpg"))["Records"][0],
                    json.loads(_event("other", "inbox/m2-front.jpg"))["Records"][0],
                    json.loads(_event(bucket, "inbox/m3-front.jpg"))["Records"][0],
                ]
            }
        ),
    ]
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]
    )
    listener = EventListener(settings, queue_url=url, publish=lambda ids: None)
    total = listener.run(until_idle=True, wait_s=1)
    # every message but the good one and the mixed one is poison; the mixed one's foreign record too
    assert total.received == len(bodies) and total.poison == len(bodies) - 2 + 1
    with session_scope() as session:
        jobs = session.scalars(select(Job).where(Job.batch_id == listener.batch_id)).all()
    queued = sorted(j.external_ref or "" for j in jobs if j.status == JobStatus.QUEUED)
    assert queued == ["inbox/m1", "inbox/m3", "inbox/ok"]  # the cards' <ref> (issue 19)
    assert len(jobs) == len(bodies) + 2  # every message and record accounted for, as a job
    reasons = " ".join(j.last_error or "" for j in jobs)
    assert ("someone-elses-bucket" in reasons and "RecursionError" in reasons) or "not JSON" in reasons
    assert "object key contains a NUL character" in reasons and "lone surrogates" in reasons
    assert "eTag is not a short printable string" in reasons
    assert "record 2: event from bucket 'other'" in reasons


def test_events_from_another_bucket_are_poison() -> None:
    with pytest.raises(PoisonMessage, match="does not serve"):
        parse_notification(_event("other", "k.jpg"), frozenset({"mine"}))
    assert parse_notification(_event("mine", "k.jpg"), frozenset({"mine"}))[0].key == "k.jpg"
