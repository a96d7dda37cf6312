"""``idbatch listen``: upload events from SQS become jobs; poison is set aside; deletes after commit."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from db.models import Job
from db.session import session_scope
from idbatch.domain import JobStatus
from idbatch.settings import Settings
from idbatch.storage.s3 import make_client
from producers.events import EventListener, parse_notification
from tests.conftest import Env, Simulator
from tests.s3.helpers import drain, report
from tests.s3.test_prefix_scan import _card_images

pytestmark = pytest.mark.integration


@pytest.fixture
def queues(s3env: Settings, s3: Any, bucket: str) -> tuple[str, str]:
    sqs = make_client("sqs", s3env.sqs_endpoint_url)
    name = f"uploads-{uuid.uuid4().hex[:8]}"
    dlq = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    return url, dlq


def _depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_upload_events_become_jobs_and_every_object_is_accounted_for(
    s3env: Settings, env: Env, s3: Any, bucket: str, queues: tuple[str, str], simulator: Simulator
) -> None:
    url, dlq = queues
    # window 0: a lone front is resolved by the loop's next sweep, a one-sided job (AceData
    # reads only the front); pairing itself is tests/s3/test_event_pairing.py
    settings = env(
        acedata_base_url=simulator.url, events_dlq_url=dlq, image_max_bytes=100_000, events_pair_window_s=0
    )
    sqs = make_client("sqs", settings.sqs_endpoint_url)
    front, _ = _card_images()
    uploads = {f"inbox/用户-{i:03d}-front.jpg": front for i in range(25)}
    uploads |= {
        "inbox/empty-front.jpg": b"",
        "inbox/readme.txt": b"hello",
        "inbox/big-front.jpg": b"\0" * 100_001,
    }
    for key, body in uploads.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    sqs.send_message(QueueUrl=url, MessageBody="this is not JSON")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"hello": "world"}))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}))
    # a notification delivered twice (the first delete "lost"): one job only
    redelivered = _notification(bucket, "inbox/用户-000-front.jpg", len(front), s3)
    sqs.send_message(QueueUrl=url, MessageBody=redelivered)
    published: list[int] = []

    listener = EventListener(settings, queue_url=url, provider="acedata", publish=published.extend)
    stats = listener.run(until_idle=True, wait_s=1)

    # uploads + 2 poison + our test event + S3's own s3:TestEvent on configuration, and the
    # redelivery we sent: a duplicate. SQS is at-least-once: under load the server can hand
    # a message out again (one CI-box run got 2 duplicates); each is one more receive, and
    # still one job (rep.jobs below)
    assert stats.duplicates >= 1
    assert stats.received == len(uploads) + 4 + stats.duplicates
    assert (stats.poison, stats.ignored) == (2, 2)
    assert stats.deleted == stats.received
    assert _depth(sqs, url) == 0
    aside = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert sorted(m["MessageAttributes"]["idbatch-reason"]["StringValue"] for m in aside) == [
        "message body is not JSON",
        "not an S3 event notification (no Records)",
    ]
    assert sorted(published) == sorted(_ids(listener.batch_id, JobStatus.QUEUED))

    drain(listener.batch_id)
    rep = report(listener.batch_id)
    assert rep.accounted
    assert rep.done
    assert rep.jobs == len(uploads) + 2  # every object, plus the two poison messages
    with session_scope() as session:
        named = set(session.scalars(select(Job.front_image).where(Job.batch_id == listener.batch_id)))
    assert {f"s3://{bucket}/{k}" for k in uploads} <= named
    reasons = " | ".join(r["reason"] for r in rep.rejected)
    for needle in (
        "poison SQS message",
        "empty (0 bytes)",
        "over the 100000-byte limit",
        "not a readable image",
    ):
        assert needle in reasons
    assert rep.counts.get("rejected") == 5  # 2 poison + empty + big + readme.txt (not an image)

    # a second listener on the same queue reuses the standing batch
    assert EventListener(settings, queue_url=url, provider="acedata").batch_id == listener.batch_id


def test_a_message_received_too_often_is_set_aside(s3env: Settings, env: Env, bucket: str) -> None:
    settings = env(events_max_receives=1, events_visibility_s=1)
    sqs = make_client("sqs", settings.sqs_endpoint_url)
    url = sqs.create_queue(QueueName=f"again-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=_notification(bucket, "x-front.jpg", 10, None))
    sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)  # a first receive that never deleted it
    stats = EventListener(settings, queue_url=url, publish=lambda ids: None).run(until_idle=True, wait_s=2)
    assert stats.poison == 1
    assert stats.deleted == 1


def test_parse_notification_decodes_keys_and_unwraps_sns() -> None:
    body = _notification("b", "a%2Fb+c/%E5%BC%A0-front.jpg", 3, None, raw=True)
    sns = json.dumps({"Type": "Notification", "Message": body})
    (info,) = parse_notification(sns)
    assert info.url == "s3://b/a/b c/张-front.jpg"
    assert info.size == 3


def _notification(bucket: str, key: str, size: int, s3: Any, *, raw: bool = False) -> str:
    from urllib.parse import quote_plus

    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"') if s3 is not None else "e"
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": bucket},
            "object": {"key": key if raw else quote_plus(key, safe="/"), "size": size, "eTag": etag},
        },
    }
    return json.dumps({"Records": [record]})


def _ids(batch_id: int, status: JobStatus) -> list[int]:
    with session_scope() as session:
        return list(session.scalars(select(Job.id).where(Job.batch_id == batch_id, Job.status == status)))
