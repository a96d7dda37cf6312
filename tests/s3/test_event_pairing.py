"""Issue 19's "must show": 1,000 cards uploaded as front and back through a real S3/SQS API
server (moto), in random order, some backs past the pairing window, duplicated events, a
listener crashing mid-stream and another taking over. Every object is accounted for,
every complete card is one two-sided job, claims from metadata are validated, stored
encrypted and checked against what the provider recognized."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from db.migrate import upgrade
from db.models import Batch, Job, JobWarning, Result
from db.models_events import EventObject
from db.session import session_scope
from idbatch.domain import TERMINAL_STATUSES, JobStatus, WarningCode
from idbatch.pii import AD_CLAIMED_NAME, vault
from idbatch.settings import Settings
from idbatch.storage.s3 import make_client
from producers.events import EventListener
from simulator.cards import Identity, RegistryEntry, Truth, make_identity, render
from tests.conftest import Env, Simulator, fresh_database
from workers.runtime import runtime
from workers.verify import process_job

pytestmark = pytest.mark.integration

CARDS = int(__import__("os").environ.get("EVT_CARDS", "1000"))
LATE = CARDS // 10  # backs uploaded after the window ended
WINDOW_S = 600.0
T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


class Clock:
    """The listener's wall clock, moved by the test: the window is judged on ledger timestamps."""

    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> dt.datetime:
        return self.t


def _identities(n: int) -> list[tuple[Identity, bytes, bytes]]:
    from faker import Faker

    rng, faker = random.Random(19), Faker("zh_CN")
    faker.seed_instance(19)
    out = []
    for _ in range(n):
        ident = make_identity(rng, faker)
        out.append(
            (ident, render(Truth("front", ident, []), rng=rng), render(Truth("back", ident, []), rng=rng))
        )
    return out


def registered(simulator: Simulator, n: int) -> list[tuple[Identity, bytes, bytes]]:
    """``n`` synthetic people with card images, known to the simulator's registry."""
    people = _identities(n)
    for ident, _, _ in people:
        simulator.state.registry[ident.id_number] = RegistryEntry(
            ident.id_number, ident.name, ident.portrait_seed
        )  # type: ignore[attr-defined]
    return people


def _b64_word(text: str) -> str:
    """Non-ASCII metadata as SDKs send it: an RFC 2047 encoded word."""
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


def _aws(bucket: str, key: str, size: int, etag: str) -> str:
    from urllib.parse import quote_plus

    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": bucket},
            "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag},
        },
    }
    return json.dumps({"Records": [record]})


def _minio(bucket: str, key: str, size: int, etag: str, metadata: dict[str, str]) -> str:
    """MinIO's notification shape: top-level EventName/Key, minio:s3, userMetadata inline."""
    from urllib.parse import quote

    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "eventName": "s3:ObjectCreated:Put",
        "s3": {
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": quote(key),
                "size": size,
                "eTag": etag,
                "contentType": "image/jpeg",
                "userMetadata": {
                    "content-type": "image/jpeg",
                    **{f"X-Amz-Meta-{k}": v for k, v in metadata.items()},
                },
            },
        },
    }
    return json.dumps({"EventName": "s3:ObjectCreated:Put", "Key": f"{bucket}/{key}", "Records": [record]})


class Uploads:
    """Objects put to S3 and the notification of each, sent by the test (ordering under its control)."""

    def __init__(self, s3: Any, sqs: Any, bucket: str, queue: str) -> None:
        self.s3, self.sqs, self.bucket, self.queue = s3, sqs, bucket, queue
        self.bodies: dict[str, str] = {}
        self.minio: dict[str, str] = {}
        self.urls: set[str] = set()

    def put(self, key: str, body: bytes, metadata: dict[str, str]) -> None:
        etag = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=metadata)["ETag"].strip(
            '"'
        )
        self.bodies[key] = _aws(self.bucket, key, len(body), etag)
        self.minio[key] = _minio(self.bucket, key, len(body), etag, metadata)
        self.urls.add(f"s3://{self.bucket}/{key}")

    def put_all(self, plan: list[tuple[str, bytes, dict[str, str]]]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: self.put(*p), plan))

    def send(self, bodies: list[str]) -> None:
        for i in range(0, len(bodies), 10):
            entries = [{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[i : i + 10])]
            self.sqs.send_message_batch(QueueUrl=self.queue, Entries=entries)


def _jobs(batch_ids: list[int]) -> list[Job]:
    with session_scope() as session:
        return list(session.scalars(select(Job).where(Job.batch_id.in_(batch_ids))))


@pytest.fixture
def own_db() -> Iterator[str]:
    """A database of this test's own: it counts every batch, ledger row and job there is."""
    with fresh_database("idbatch_pair") as url:
        upgrade(url)
        yield url


def test_a_thousand_cards_pair_across_redelivery_a_crash_and_late_backs(
    s3env: Settings, env: Env, s3: Any, bucket: str, simulator: Simulator, own_db: str
) -> None:
    routes = [
        {"prefix": f"{bucket}/ocr/", "provider": "tencent_ocr", "batch": "ocr-flow"},
        {"route": "faceid", "provider": "tencent_faceid", "batch": "faceid-flow"},
    ]
    settings = env(
        database_url=own_db,
        acedata_base_url=simulator.url,
        events_pair_window_s=WINDOW_S,
        events_routes=json.dumps(routes),
        events_visibility_s=30,
    )
    sqs = make_client("sqs", settings.sqs_endpoint_url)
    queue = sqs.create_queue(QueueName=f"cards-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    people = registered(simulator, 4)
    up = Uploads(s3, sqs, bucket, queue)
    rng = random.Random(7)

    wrong_name = {i for i in range(CARDS) if i % 50 == 3}  # claims another person's name
    bad_id = {i for i in range(CARDS) if i % 97 == 5}  # an ID number failing its checksum
    late = set(rng.sample([i for i in range(CARDS) if i not in bad_id], LATE))

    def meta(i: int, *, side: str) -> dict[str, str]:
        ident = people[i % len(people)][0]
        if side == "back":
            return {"external-ref": f"CUST-{i:04d}"}  # the claims ride on the front
        name = people[(i + 1) % len(people)][0].name if i in wrong_name else ident.name
        number = (
            ident.id_number[:-1] + ("0" if ident.id_number[-1] != "0" else "1")
            if i in bad_id
            else ident.id_number
        )
        return {"external-ref": f"CUST-{i:04d}", "name": _b64_word(name), "id-number": number}

    phase1: list[str] = []
    plan: list[tuple[str, bytes, dict[str, str]]] = []
    for i in range(CARDS):
        _, front, back = people[i % len(people)]
        plan.append((f"kyc/2026/C{i:04d}-front.jpg", front, meta(i, side="front")))
        plan.append((f"kyc/2026/C{i:04d}-back.jpg", back, meta(i, side="back")))
        phase1.append(f"kyc/2026/C{i:04d}-front.jpg")
        if i not in late:
            phase1.append(f"kyc/2026/C{i:04d}-back.jpg")
    # a second flow by prefix (Tencent OCR reads both sides) and a third by routing key
    _, front, back = people[0]
    for i in range(20):
        plan.append((f"ocr/O{i:02d}-front.jpg", front, {}))
        phase1.append(f"ocr/O{i:02d}-front.jpg")
        if i % 2 == 0:
            plan.append((f"ocr/O{i:02d}-back.jpg", back, {}))
            phase1.append(f"ocr/O{i:02d}-back.jpg")
    for i in range(10):
        for side, body in (("front", front), ("back", back)):
            plan.append((f"face/F{i:02d}-{side}.jpg", body, {"route": "faceid"}))
            phase1.append(f"face/F{i:02d}-{side}.jpg")
    up.put_all(plan)
    rng.shuffle(phase1)
    dupes = rng.sample(phase1, 150)
    bodies = (
        [up.bodies[k] for k in phase1]
        + [up.minio[k] for k in dupes[:50]]
        + [up.bodies[k] for k in dupes[50:]]
    )
    rng.shuffle(bodies)
    # The events arrive in waves (moto's ReceiveMessage slows with queue depth; SQS does not).
    size = len(bodies) // 10 + 1
    waves = [bodies[i : i + size] for i in range(0, len(bodies), size)]

    clock, published = Clock(), []
    first = EventListener(settings, queue_url=queue, provider="acedata", publish=published.extend, now=clock)
    duplicates = 0
    for wave in waves[:3]:
        up.send(wave)
        one = first.run(until_idle=True, wait_s=1)
        assert one.deleted == one.received
        duplicates += one.duplicates

    # a listener that crashes after its commit, before its delete: its messages come back
    crashing = EventListener(
        env(events_visibility_s=2), queue_url=queue, provider="acedata", publish=published.extend, now=clock
    )

    def lost_delete(messages: list[dict[str, Any]]) -> int:
        raise ConnectionError("the listener died before deleting")

    crashing._delete = lost_delete  # type: ignore[method-assign]
    up.send(waves[3])
    with pytest.raises(ConnectionError):
        crashing.run(wait_s=1)

    time.sleep(2.5)  # the crashed listener's messages become visible again
    env(events_visibility_s=30)
    rest = EventListener(settings, queue_url=queue, provider="acedata", publish=published.extend, now=clock)
    for wave in [[], *waves[4:]]:
        up.send(wave)
        duplicates += rest.run(until_idle=True, wait_s=1).duplicates
    assert duplicates >= 150  # every duplicated event, plus whatever the crash left undeleted
    batches = [first.batch_id, *rest.sides._batches.values()]
    assert len(set(batches)) == 3

    with session_scope() as session:
        waiting = session.scalar(select(func.count()).where(EventObject.job_id.is_(None)))
    assert waiting == LATE + 10  # the late backs' fronts and the OCR fronts without a back
    # the window ends: lone fronts are resolved by the provider's needs
    clock.t = T0 + dt.timedelta(seconds=WINDOW_S + 1)
    expired = rest.sweep()
    assert (expired.jobs, expired.rejected) == (LATE, 10)

    # phase 2: the late backs, after the window
    up.send([up.bodies[f"kyc/2026/C{i:04d}-back.jpg"] for i in sorted(late)])
    clock.t = T0 + dt.timedelta(seconds=WINDOW_S + 100)
    late_run = EventListener(
        settings, queue_url=queue, provider="acedata", publish=published.extend, now=clock
    )
    assert late_run.run(until_idle=True, wait_s=1).pending == LATE
    clock.t = T0 + dt.timedelta(seconds=2 * WINDOW_S + 200)
    assert late_run.sweep().rejected == LATE

    # --- every object accounted for, exactly once ----------------------------------------
    jobs = _jobs(batches)
    named = [u for j in jobs for u in (j.front_image, j.back_image) if u]
    assert Counter(named) == Counter(up.urls)  # each object in exactly one job
    with session_scope() as session:
        ledger = session.execute(select(EventObject.url, EventObject.job_id)).all()
        by_batch = dict(session.execute(select(Batch.source, Batch.provider)).all())
    assert len(ledger) == len(up.urls) and all(job_id is not None for _, job_id in ledger)
    assert sorted(by_batch.values()) == ["acedata", "tencent_faceid", "tencent_ocr"]
    assert sorted(published) == sorted(j.id for j in jobs if j.status == JobStatus.QUEUED)

    kyc_jobs = [j for j in jobs if j.batch_id == first.batch_id]
    assert len(kyc_jobs) == CARDS + LATE  # every card once, plus the late backs as their own rejected jobs
    kyc = {j.external_ref: j for j in kyc_jobs if j.front_image}
    assert len(kyc) == CARDS
    for i in range(CARDS):
        job = kyc[f"CUST-{i:04d}"]
        assert job.front_image == f"s3://{bucket}/kyc/2026/C{i:04d}-front.jpg"
        if i in bad_id:
            assert job.status == JobStatus.REJECTED and "field id_number" in (job.last_error or "")
        elif i in late:
            assert job.status == JobStatus.QUEUED and job.back_image is None  # AceData reads the front only
        else:
            assert job.status == JobStatus.QUEUED
            assert job.back_image == f"s3://{bucket}/kyc/2026/C{i:04d}-back.jpg"  # one two-sided job
    lone_backs = [j for j in kyc_jobs if not j.front_image]
    assert sorted(j.external_ref for j in lone_backs) == sorted(f"CUST-{i:04d}" for i in late)
    assert all(
        j.status == JobStatus.REJECTED and "came earlier and is job" in (j.last_error or "")
        for j in lone_backs
    )
    ocr = [j for j in jobs if j.front_image and "/ocr/" in j.front_image]
    assert sorted(j.status for j in ocr).count(JobStatus.QUEUED) == 10
    assert all(
        "tencent_ocr reads both sides" in (j.last_error or "") for j in ocr if j.status == JobStatus.REJECTED
    )
    face = [j for j in jobs if j.front_image and "/face/" in j.front_image]
    assert len(face) == 10 and all(j.back_image and j.status == JobStatus.QUEUED for j in face)

    # claims are stored encrypted, never in the clear
    sample = kyc["CUST-0000"]
    assert sample.claimed_name_enc is not None
    assert people[0][0].name.encode() not in sample.claimed_name_enc
    assert vault().decrypt(sample.claimed_name_enc, AD_CLAIMED_NAME) == people[0][0].name

    # --- a subset through the worker and the simulator: claims checked against the card ----
    subset = [kyc[f"CUST-{i:04d}"].id for i in range(min(300, CARDS)) if i not in late and i not in bad_id][
        :40
    ]
    subset += [kyc[f"CUST-{i:04d}"].id for i in sorted(wrong_name - late - bad_id)[:5]]
    for _ in range(20):  # retries (an injected fault, a wait for a reusable answer) until terminal
        with session_scope() as session:
            open_ids = list(
                session.scalars(
                    select(Job.id).where(Job.id.in_(subset), Job.status.not_in(TERMINAL_STATUSES))
                )
            )
        if not open_ids:
            break
        for job_id in open_ids:
            process_job(job_id, runtime())
        time.sleep(0.2)
    with session_scope() as session:
        done = dict(session.execute(select(Job.external_ref, Job.status).where(Job.id.in_(subset))).all())
        mismatched = set(
            session.scalars(
                select(Job.external_ref)
                .join(JobWarning, JobWarning.job_id == Job.id)
                .where(Job.id.in_(subset), JobWarning.code == WarningCode.CLAIMED_NAME_MISMATCH)
            )
        )
        answered = session.scalar(select(func.count()).select_from(Result).where(Result.job_id.in_(subset)))
    assert answered == len(set(subset))
    wrong_refs = {f"CUST-{i:04d}" for i in wrong_name}
    assert mismatched == {ref for ref in done if ref in wrong_refs} and mismatched
    assert all(done[ref] == (JobStatus.NEGATIVE if ref in wrong_refs else JobStatus.PASSED) for ref in done)


def test_visibility_is_extended_while_a_slow_poll_is_handled(
    s3env: Settings, env: Env, s3: Any, bucket: str
) -> None:
    # window 0: the lone front is resolved by the same poll's sweep (nothing left pending for
    # other tests' listeners, which sweep every batch's expired cards)
    settings = env(events_visibility_s=60, events_pair_window_s=0)
    sqs = make_client("sqs", settings.sqs_endpoint_url)
    queue = sqs.create_queue(QueueName=f"slow-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    up = Uploads(s3, sqs, bucket, queue)
    up.put("slow/S1-front.jpg", b"\xff\xd8" + b"x" * 100, {})
    up.send(list(up.bodies.values()))
    ticks = iter(range(0, 10_000, 40))  # every reading of the clock is 40 s later: handling is "slow"
    own = make_client.__wrapped__("sqs", settings.sqs_endpoint_url)  # not the process's shared client
    listener = EventListener(
        settings, queue_url=queue, sqs=own, publish=lambda ids: None, clock=lambda: next(ticks)
    )
    extended: list[int] = []
    real = own.change_message_visibility_batch

    def counting(**kwargs: Any) -> Any:
        extended.append(len(kwargs["Entries"]))
        return real(**kwargs)

    own.change_message_visibility_batch = counting
    stats = listener.poll_once(wait_s=1)
    assert stats.received == 1 and stats.pending == 1 and stats.deleted == 1 and stats.jobs == 1
    assert extended and all(n == 1 for n in extended)  # extended before the commit and the delete
