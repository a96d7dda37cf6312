"""Claims read by the worker (``IDBATCH_EVENTS_CLAIMS=worker``, the default; issue 19).

With no rule routing by key, ``idbatch listen`` sends S3 no request at all for AWS
events; the worker reads each card's claims from the HEAD it sends of the front before
calling (and the back's, and the sidecar when the metadata claims nothing), holds them
to the manifest's rules, stores them encrypted, and the verdict checks them against
what the provider recognized. Real moto server, real Postgres, the simulator.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from db.migrate import upgrade
from db.models import Attempt, Job, JobWarning
from db.session import session_scope
from idbatch.domain import JobStatus, WarningCode
from idbatch.pii import AD_CLAIMED_ID, AD_CLAIMED_NAME, vault
from idbatch.settings import Settings
from idbatch.storage.s3 import make_client
from producers.events import EventListener
from tests.conftest import Env, Simulator, fresh_database
from tests.s3.helpers import drain
from tests.s3.test_event_pairing import Uploads, _b64_word, _identities, registered

pytestmark = pytest.mark.integration

CARDS = 24


class Counting:
    """An S3 client that counts the requests made through it."""

    def __init__(self, client: Any) -> None:
        self.client, self.calls = client, 0

    def __getattr__(self, name: str) -> Any:
        self.calls += 1
        return getattr(self.client, name)


@pytest.fixture
def own_db() -> Iterator[str]:
    with fresh_database("idbatch_claims") as url:
        upgrade(url)
        yield url


def _jobs() -> dict[str, Job]:
    with session_scope() as session:
        return {str(j.front_image).rsplit("/", 1)[-1]: j for j in session.scalars(select(Job))}


def test_the_worker_reads_checks_and_stores_the_claims_of_uploads(
    s3env: Settings, env: Env, s3: Any, bucket: str, simulator: Simulator, own_db: str
) -> None:
    settings = env(database_url=own_db, acedata_base_url=simulator.url, events_pair_window_s=600)
    assert settings.events_claims == "worker" and not settings.events_routes
    sqs = make_client("sqs", settings.sqs_endpoint_url)
    queue = sqs.create_queue(QueueName=f"claims-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    people = registered(simulator, 3)
    up = Uploads(s3, sqs, bucket, queue)
    wrong_name, bad_id, conflict, sidecar, bad_sidecar, bare = {3, 9}, {5}, {7}, {11}, {13}, {15}
    unrouted = {17}  # a routing key no rule matches: not this flow's card
    overwritten = {19}  # its front replaced under the same key after its event was recorded
    plan = []
    for i in range(CARDS):
        ident, front, back = people[i % len(people)]
        meta = {"external-ref": f"CUST-{i:04d}", "name": _b64_word(ident.name), "id-number": ident.id_number}
        if i in wrong_name:
            meta["name"] = _b64_word(people[(i + 1) % len(people)][0].name)
        if i in bad_id:
            meta["id-number"] = ident.id_number[:-1] + ("0" if ident.id_number[-1] != "0" else "1")
        back_meta = {"external-ref": f"OTHER-{i:04d}"} if i in conflict else {}
        if i in sidecar | bad_sidecar | bare:
            meta = {}
        if i in unrouted:
            meta["route"] = "nosuch"
        plan.append((f"in/C{i:04d}-front.jpg", front, meta))
        plan.append((f"in/C{i:04d}-back.jpg", back, back_meta))
    up.put_all(plan)
    s3.put_object(
        Bucket=bucket,
        Key="in/C0011.json",
        Body=json.dumps({"external_ref": "SIDE-0011", "name": people[11 % 3][0].name}).encode(),
    )
    s3.put_object(Bucket=bucket, Key="in/C0013.json", Body=b"{not json")
    bodies = list(up.bodies.values())
    random.Random(19).shuffle(bodies)
    up.send(bodies)

    counting = Counting(make_client.__wrapped__("s3", settings.s3_endpoint_url))
    listener = EventListener(
        settings, queue_url=queue, provider="acedata", publish=lambda ids: None, s3=counting
    )
    stats = listener.run(until_idle=True, wait_s=1)
    assert stats.jobs == CARDS and stats.paired == CARDS
    assert counting.calls == 0  # no HEAD, no sidecar GET: the listener sent S3 nothing
    with session_scope() as session:
        unread = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.claimed_name_enc.is_(None), Job.claimed_id_enc.is_(None))
        )
    assert unread == CARDS  # the claims are still in S3
    for i in overwritten:  # other bytes under the same key: not the version the event named
        s3.put_object(Bucket=bucket, Key=f"in/C{i:04d}-front.jpg", Body=people[(i + 1) % 3][1])

    drain(listener.batch_id)
    jobs = _jobs()
    v = vault()
    with session_scope() as session:
        billed = dict(session.execute(select(Attempt.job_id, func.count()).group_by(Attempt.job_id)).all())
        mismatched = set(
            session.scalars(
                select(Job.external_ref)
                .join(JobWarning, JobWarning.job_id == Job.id)
                .where(JobWarning.code == WarningCode.CLAIMED_NAME_MISMATCH)
            )
        )
    for i in range(CARDS):
        ident = people[i % len(people)][0]
        job = jobs[f"C{i:04d}-front.jpg"]
        if i in bad_id:
            assert job.status == JobStatus.REJECTED
            assert (job.last_error or "").startswith("metadata of in/C0005-front.jpg, field id_number: ")
            assert ident.id_number not in (job.last_error or "")  # the reason never quotes the number
            assert job.id not in billed  # rejected before any call
        elif i in overwritten:
            assert job.status == JobStatus.REJECTED and job.id not in billed  # never paid on other bytes
            assert (job.last_error or "").startswith(
                "front_image: object changed since its upload event: C0019-front.jpg is no longer"
            )
        elif i in unrouted:
            assert job.status == JobStatus.REJECTED and job.id not in billed
            assert job.last_error == "routing key 'nosuch' matches no rule (IDBATCH_EVENTS_ROUTES)"
        elif i in conflict:
            assert job.status == JobStatus.REJECTED and job.id not in billed
            assert (job.last_error or "").startswith("front and back claim different external_ref values")
        elif i in bad_sidecar:
            assert job.status == JobStatus.REJECTED
            assert "sidecar in/C0013.json: sidecar is not UTF-8 JSON" in (job.last_error or "")
        elif i in bare:
            assert job.status == JobStatus.PASSED and job.claimed_name_enc is None  # claims nothing
            assert job.external_ref == "in/C0015"
        elif i in sidecar:
            assert job.status == JobStatus.PASSED and job.external_ref == "SIDE-0011"
            assert v.decrypt(job.claimed_name_enc, AD_CLAIMED_NAME) == ident.name
        else:
            assert job.external_ref == f"CUST-{i:04d}"
            assert job.claimed_name_enc is not None and ident.name.encode() not in job.claimed_name_enc
            assert v.decrypt(job.claimed_id_enc, AD_CLAIMED_ID) == ident.id_number
            expected = JobStatus.NEGATIVE if i in wrong_name else JobStatus.PASSED
            assert job.status == expected, (i, job.status, job.last_error)
    assert mismatched == {f"CUST-{i:04d}" for i in wrong_name}


def test_with_claims_at_the_listener_it_reads_them_at_ingest(
    s3env: Settings, env: Env, s3: Any, bucket: str, own_db: str
) -> None:
    settings = env(database_url=own_db, events_claims="listener", events_pair_window_s=600)
    sqs = make_client("sqs", settings.sqs_endpoint_url)
    queue = sqs.create_queue(QueueName=f"claims-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    ((ident, front, back),) = _identities(1)
    up = Uploads(s3, sqs, bucket, queue)
    up.put_all(
        [
            ("at/A1-front.jpg", front, {"name": _b64_word(ident.name), "id-number": ident.id_number}),
            ("at/A1-back.jpg", back, {}),
            ("at/A2-front.jpg", front, {"id-number": ident.id_number[:-1] + "Z"}),
            ("at/A2-back.jpg", back, {}),
        ]
    )
    up.send(list(up.bodies.values()))
    counting = Counting(make_client.__wrapped__("s3", settings.s3_endpoint_url))
    listener = EventListener(
        settings, queue_url=queue, provider="acedata", publish=lambda ids: None, s3=counting
    )
    assert listener.run(until_idle=True, wait_s=1).jobs == 1
    assert counting.calls >= 4  # a HEAD per object
    jobs = _jobs()
    assert vault().decrypt(jobs["A1-front.jpg"].claimed_name_enc, AD_CLAIMED_NAME) == ident.name
    assert jobs["A2-front.jpg"].status == JobStatus.REJECTED  # refused at ingest, never queued
    assert "field id_number" in (jobs["A2-front.jpg"].last_error or "")


def test_reading_an_object_pinned_to_its_version(s3env: Settings, s3: Any, bucket: str) -> None:
    """``read_object(etag=…)``: the version named, or a refusal from the HEAD; the GET asks
    ``If-Match`` as well, so a replacement between HEAD and GET is refused the same way."""
    from idbatch.storage.base import ObjectMissing
    from idbatch.storage.s3 import S3Storage

    first = s3.put_object(Bucket=bucket, Key="pin/A-front.jpg", Body=b"\xff\xd8one")["ETag"].strip('"')
    storage = S3Storage(make_client("s3", s3env.s3_endpoint_url))
    url = f"s3://{bucket}/pin/A-front.jpg"
    assert storage.read_object(url, 1000, first)[0] == b"\xff\xd8one"
    second = s3.put_object(Bucket=bucket, Key="pin/A-front.jpg", Body=b"\xff\xd8two")["ETag"].strip('"')
    with pytest.raises(ObjectMissing, match=r"object changed since its upload event: A-front\.jpg"):
        storage.read_object(url, 1000, first)
    assert storage.read_object(url, 1000, second)[0] == b"\xff\xd8two"
    assert storage.read_object(url, 1000)[0] == b"\xff\xd8two"  # unpinned: whatever is there
    original = storage._head

    def head_then_replace(u: str) -> Any:  # the HEAD sees the named version; then it is replaced
        out = original(u)
        s3.put_object(Bucket=bucket, Key="pin/A-front.jpg", Body=b"\xff\xd8three")
        return out

    storage._head = head_then_replace  # type: ignore[method-assign]
    with pytest.raises(ObjectMissing, match="object changed"):  # refused by the GET's If-Match alone
        storage.read_object(url, 1000, second)
