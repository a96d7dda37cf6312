"""``idbatch listen``: S3 upload events from SQS become jobs in a standing "events" batch.

Each received SQS batch (<= 10 messages, long polling) is handled in four steps:

1. parse: every ``ObjectCreated:*`` record names one new object → one job whose front
   image is that object (an events batch verifies objects one by one; pair sides with a
   prefix scan instead). ``s3:TestEvent`` and ``ObjectRemoved:*`` are acknowledged and
   make no job. SNS-wrapped notifications are unwrapped.
2. poison: a message that is not an S3 notification, or that came back more than
   ``IDBATCH_EVENTS_MAX_RECEIVES`` times, is set aside *with its reason*: recorded as a
   rejected job (``external_ref = sqs:<message id>``) so the report accounts for it, and
   copied to ``IDBATCH_EVENTS_DLQ_URL`` when one is configured.
3. record: the jobs are inserted and committed (``producers.submit.ingest_rows``), then
   published. A record already in the batch (same bucket/key/etag: a redelivered message
   whose delete was lost) is skipped, so redelivery never makes a second job.
4. delete: only now, one ``DeleteMessageBatch`` for the handled messages. A crash
   before it leaves them invisible until the visibility timeout, then they come back
   (and step 3 skips them). Handling that outlives half the visibility timeout extends
   it first, so a slow database never hands the same message to a second listener.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from db.ingest import next_row_number, recorded_keys, standing_batch
from dispatch.publish import Publisher
from idbatch.logging import get_logger
from idbatch.providers import check_config
from idbatch.settings import Settings
from idbatch.storage.base import ObjectInfo
from idbatch.storage.s3 import make_client, s3_url
from producers.csv_manifest import ManifestRow, RowError
from producers.s3 import ObjectRow, RejectedObjects, object_job_values
from producers.submit import ingest_rows

log = get_logger(__name__)

SQS_MAX_BATCH = 10


class PoisonMessage(ValueError):
    """A message that can never become a job; the message text is the reason."""


@dataclass
class PollStats:
    received: int = 0
    jobs: int = 0
    rejected: int = 0
    duplicates: int = 0
    ignored: int = 0
    poison: int = 0
    deleted: int = 0

    def add(self, other: PollStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Parsed:
    message: dict[str, Any]
    objects: list[ObjectInfo] = field(default_factory=list)
    poison: str | None = None


def parse_notification(body: str, buckets: frozenset[str] = frozenset()) -> list[ObjectInfo]:
    """The objects created according to one SQS message body; raises PoisonMessage.

    ``buckets``, when given, are the only buckets whose events are trusted: a message
    naming another one is poison (anyone who can write to the queue could otherwise
    make us read and present any bucket this process can reach).
    """
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise PoisonMessage("message body is not JSON") from exc
    if isinstance(payload, dict) and payload.get("Type") == "Notification" and "Message" in payload:
        return parse_notification(str(payload["Message"]), buckets)  # delivered through SNS
    if not isinstance(payload, dict):
        raise PoisonMessage("message body is not a JSON object")
    if payload.get("Event") == "s3:TestEvent":
        return []
    records = payload.get("Records")
    if not isinstance(records, list):
        raise PoisonMessage("not an S3 event notification (no Records)")
    objects: list[ObjectInfo] = []
    for record in records:
        try:
            if record.get("eventSource") != "aws:s3":
                raise PoisonMessage(f"record from {record.get('eventSource')!r}, not aws:s3")
            if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
                continue
            bucket = record["s3"]["bucket"]["name"]
            obj = record["s3"]["object"]
            key = unquote_plus(obj["key"])  # event keys are URL-encoded, spaces as "+"
            size = int(obj.get("size", 0))
            etag = str(obj.get("eTag", "")).strip('"')
        except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
            raise PoisonMessage(f"malformed S3 record ({type(exc).__name__})") from exc
        if buckets and bucket not in buckets:
            raise PoisonMessage(f"event from bucket {bucket!r}, which this listener does not serve")
        objects.append(ObjectInfo(s3_url(bucket, key), key, size, etag))
    return objects


class EventListener:
    def __init__(
        self,
        settings: Settings,
        *,
        queue_url: str | None = None,
        provider: str | None = None,
        config: dict[str, Any] | None = None,
        sqs: Any = None,
        publish: Publisher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.queue_url = queue_url or settings.events_queue_url
        if not self.queue_url:
            raise ValueError("no queue: set IDBATCH_EVENTS_QUEUE_URL or pass --queue-url")
        self.provider = provider or settings.provider
        self.config = config or {}
        self.sqs = sqs or make_client("sqs", settings.sqs_endpoint_url)
        self.publish = publish
        self.clock = clock
        check_config(self.provider, self.config)
        self.batch_id = standing_batch(f"sqs:{self.queue_url}", self.provider, self.config)
        self._rows = next_row_number(self.batch_id)

    # --- one receive --------------------------------------------------------------------

    def poll_once(self, wait_s: int | None = None) -> PollStats:
        wait = self.settings.events_wait_s if wait_s is None else wait_s
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=SQS_MAX_BATCH,
            WaitTimeSeconds=wait,
            VisibilityTimeout=self.settings.events_visibility_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        received_at = self.clock()
        messages: list[dict[str, Any]] = response.get("Messages", [])
        stats = PollStats(received=len(messages))
        if not messages:
            return stats
        parsed = [self._parse(m) for m in messages]
        self._keep_invisible(messages, received_at)
        items: list[ManifestRow | RowError] = []
        for p in parsed:
            if p.poison is not None:
                stats.poison += 1
                items.append(self._poison_row(p))
            elif not p.objects:
                stats.ignored += 1
            for info in p.objects:
                items.append(self._object_row(info))
        items, stats.duplicates = self._without_recorded(items)
        if items:
            result = ingest_rows(
                self.batch_id,
                items,
                self.provider,
                self.config,
                publish=self.publish,
                job_values=object_job_values,
            )
            stats.jobs, stats.rejected = result.queued, result.rejected
        self._set_aside([p for p in parsed if p.poison is not None])
        self._keep_invisible(messages, received_at)
        stats.deleted = self._delete(messages)
        return stats

    def _parse(self, message: dict[str, Any]) -> _Parsed:
        """One message, isolated: whatever is wrong with it poisons it alone, never the
        listener or the valid messages received with it."""
        try:
            receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            if receives > self.settings.events_max_receives:
                return _Parsed(message, poison=f"received {receives} times without being recorded")
            buckets = frozenset(self.settings.events_buckets)
            return _Parsed(message, parse_notification(str(message.get("Body", "")), buckets))
        except PoisonMessage as exc:
            return _Parsed(message, poison=str(exc))
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError, RecursionError) as exc:
            # 1e400 sizes, 100 000-deep nesting, wrong types: named by class, never echoed
            return _Parsed(message, poison=f"unreadable message ({type(exc).__name__})")

    def _row(self) -> int:
        self._rows += 1
        return self._rows - 1

    def _object_row(self, info: ObjectInfo) -> ManifestRow | RowError:
        row = self._row()
        ref = info.key if len(info.key) <= 256 else "…" + info.key[-255:]
        reason = None
        if info.key.endswith("/"):
            reason = "folder placeholder object, not an image"
        elif info.size == 0:
            reason = "front image is empty (0 bytes)"
        elif info.size > self.settings.image_max_bytes:
            reason = f"front image is {info.size} bytes, over the {self.settings.image_max_bytes}-byte limit"
        if reason is not None:
            return RejectedObjects(row, 0, reason, ref, front=info.url)
        return ObjectRow(row, 0, ref, info.url, None, None, None, objects=(info,))

    def _poison_row(self, parsed: _Parsed) -> RowError:
        message_id = str(parsed.message.get("MessageId", "?"))
        return RowError(
            self._row(), 0, f"poison SQS message: {parsed.poison}", external_ref=f"sqs:{message_id}"
        )

    def _without_recorded(
        self, items: list[ManifestRow | RowError]
    ) -> tuple[list[ManifestRow | RowError], int]:
        """Drop object rows whose exact object version is already a job here (or earlier in this poll)."""
        keys: dict[int, str] = {}
        for item in items:
            if isinstance(item, ObjectRow):
                values = object_job_values(self.batch_id, item, self.provider, self.config)
                keys[id(item)] = str(values["idempotency_key"])
        if not keys:
            return items, 0
        seen = recorded_keys(self.batch_id, set(keys.values()))
        kept: list[ManifestRow | RowError] = []
        for item in items:
            key = keys.get(id(item))
            if key is not None and key in seen:
                continue
            if key is not None:
                seen.add(key)
            kept.append(item)
        return kept, len(items) - len(kept)

    def _keep_invisible(self, messages: list[dict[str, Any]], received_at: float) -> None:
        """Extend the visibility timeout when handling has used half of it."""
        timeout = self.settings.events_visibility_s
        if self.clock() - received_at < timeout / 2:
            return
        self.sqs.change_message_visibility_batch(
            QueueUrl=self.queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": timeout}
                for i, m in enumerate(messages)
            ],
        )

    def _set_aside(self, poison: list[_Parsed]) -> None:
        if not poison or not self.settings.events_dlq_url:
            return
        for p in poison:
            self.sqs.send_message(
                QueueUrl=self.settings.events_dlq_url,
                MessageBody=p.message.get("Body", "") or "(empty)",
                MessageAttributes={
                    "idbatch-reason": {"DataType": "String", "StringValue": p.poison or "poison"},
                    "idbatch-source-message-id": {
                        "DataType": "String",
                        "StringValue": str(p.message.get("MessageId")),
                    },
                },
            )

    def _delete(self, messages: list[dict[str, Any]]) -> int:
        response = self.sqs.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        failed = response.get("Failed", [])
        if failed:  # they come back after the timeout and are skipped as already recorded
            log.warning("some SQS deletes failed", failed=len(failed))
        return len(response.get("Successful", []))

    # --- the loop -----------------------------------------------------------------------

    def run(
        self,
        *,
        max_messages: int | None = None,
        until_idle: bool = False,
        wait_s: int | None = None,
        stop: threading.Event | None = None,
    ) -> PollStats:
        """Poll until ``stop`` is set, ``max_messages`` were handled, or (``until_idle``) a poll is empty."""
        total = PollStats()
        while not (stop is not None and stop.is_set()):
            stats = self.poll_once(wait_s)
            total.add(stats)
            if stats.received:
                log.info(
                    "events recorded", batch_id=self.batch_id, **{k: v for k, v in vars(stats).items() if v}
                )
            if until_idle and stats.received == 0:
                break
            if max_messages is not None and total.received >= max_messages:
                break
        return total
