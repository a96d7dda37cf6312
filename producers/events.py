"""``idbatch listen``: S3 upload events from SQS become cards, paired front and back (issue 19).

The pipeline, per SQS receive (<= 10 messages, long polling), ``events_concurrency``
receives in flight on a small thread pool:

1. parse (``producers.event_parse``): AWS and MinIO notification shapes, SNS-wrapped
   ones, ``s3:TestEvent``. A message that is not an S3 notification, names a bucket
   outside ``IDBATCH_EVENTS_BUCKETS`` or came back more than
   ``IDBATCH_EVENTS_MAX_RECEIVES`` times is poison *by itself* (never the listener or
   the valid messages received with it): a rejected job ``sqs:<message id>`` with its
   reason, copied to ``IDBATCH_EVENTS_DLQ_URL`` when set.
2. route each new object by bucket/prefix (``IDBATCH_EVENTS_ROUTES``). Its claims
   (external ref, claimed name and ID number, validated like manifest rows) are read
   here when the event carries its metadata (MinIO), or by a HEAD (else its
   ``<ref>.json`` sidecar) when a rule routes by the object's routing key or
   ``IDBATCH_EVENTS_CLAIMS=listener``; object versions the ledger already holds skip
   that. Otherwise the worker reads them from the HEAD it sends before every call
   (``workers.upload_claims``), and the listener makes no S3 request at all. An S3 that
   fails transiently leaves the message undeleted, to come back.
3. record (``producers.pairing.record_sides``): the receives completed so far are
   committed in one transaction: sides into the ledger, every card now complete
   into one job, lone sides pending in Postgres. Then the jobs are published.
4. delete: only now, ``DeleteMessageBatch``. A crash before it brings the messages back
   after the visibility timeout, and the ledger makes them duplicates. Handling that
   outlives half the visibility timeout extends it first.

A side waiting for its partner is durable in the ledger, so its message is deleted once
that is committed: SQS does not have to hold a message for the whole pairing window.
Every ``events_sweep_s`` the loop resolves the cards whose window ended
(``pairing.sweep_expired``).
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from db.events import known_objects
from db.ingest import standing_batch
from db.models import utcnow
from db.session import session_scope
from dispatch.publish import Publisher, default_publisher
from idbatch.logging import get_logger
from idbatch.providers import check_config
from idbatch.settings import Settings
from idbatch.storage.s3 import make_client
from producers.event_parse import SIDECAR, PoisonMessage, Upload, parse_notification, parse_records
from producers.event_receive import Parsed, Received, Receivers
from producers.event_sides import Deferred, SideReader
from producers.pairing import Side, poison_job, record_sides, sweep_all

log = get_logger(__name__)

SQS_MAX_BATCH = 10
GATHER_S = 0.01  # a commit waits up to this long for half the receive slots' messages
__all__ = ["EventListener", "PoisonMessage", "PollStats", "parse_notification"]


@dataclass
class PollStats:
    received: int = 0
    jobs: int = 0
    rejected: int = 0
    paired: int = 0
    pending: int = 0
    duplicates: int = 0
    ignored: int = 0
    sidecars: int = 0
    poison: int = 0
    deferred: int = 0
    deleted: int = 0
    elapsed_s: float = 0.0

    def add(self, other: PollStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def events_per_s(self) -> float:
        return self.received / self.elapsed_s if self.elapsed_s > 0 else 0.0


class EventListener:
    def __init__(
        self,
        settings: Settings,
        *,
        queue_url: str | None = None,
        provider: str | None = None,
        config: dict[str, Any] | None = None,
        sqs: Any = None,
        s3: Any = None,
        publish: Publisher | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.queue_url = queue_url or settings.events_queue_url
        if not self.queue_url:
            raise ValueError("no queue: set IDBATCH_EVENTS_QUEUE_URL or pass --queue-url")
        self.provider = provider or settings.provider
        self.config = config or {}
        self.sqs = sqs or make_client("sqs", settings.sqs_endpoint_url)
        self.s3 = s3 or make_client("s3", settings.s3_endpoint_url)
        self.publish = publish or default_publisher(settings.ingest_publish)
        self.clock = clock
        self.now = now
        check_config(self.provider, self.config)
        for rule in settings.events_routes:
            check_config(rule.provider, rule.config)  # a bad rule stops the listener at start
        self.batch_id = standing_batch(f"sqs:{self.queue_url}", self.provider, self.config)
        self.sides = SideReader(settings, self.s3, self.batch_id)
        # HEAD/sidecar reads of one SQS batch run side by side (S3 latency, not CPU)
        self._heads = ThreadPoolExecutor(4 * settings.events_concurrency, thread_name_prefix="listen-head")
        self._buckets = frozenset(settings.events_buckets)

    # --- receive and prepare (pool threads) ---------------------------------------------

    def _receive(self, wait_s: int, max_messages: int = SQS_MAX_BATCH) -> Received:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_s,
            VisibilityTimeout=self.settings.events_visibility_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        received = Received([self._parse(m) for m in response.get("Messages", [])], self.clock())
        uploads = [u for p in received.parsed for u in p.uploads]
        if uploads and self.sides.reads_uploads:
            # versions the ledger holds need no HEAD (a redelivery): one query saves them
            with session_scope() as session:
                known = known_objects(session, [(u.url, u.etag) for u in uploads])
            self._prepare(received.parsed, known)
        elif uploads:
            self._prepare(received.parsed, set())  # no S3 request: the ledger's insert finds duplicates
        return received

    def _parse(self, message: dict[str, Any]) -> Parsed:
        try:
            receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            if receives > self.settings.events_max_receives:
                return Parsed(message, poison=f"received {receives} times without being recorded")
            uploads, rejected = parse_records(str(message.get("Body", "")), self._buckets)
            return Parsed(message, uploads, rejected=rejected)
        except PoisonMessage as exc:
            return Parsed(message, poison=str(exc))
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError, RecursionError) as exc:
            # 1e400 sizes, 100 000-deep nesting, wrong types: named by class, never echoed
            return Parsed(message, poison=f"unreadable message ({type(exc).__name__})")

    def _prepare(self, parsed: list[Parsed], known: set[tuple[str, str]]) -> None:
        """Read every new object of one receive, side by side (S3 latency, not CPU)."""
        todo: list[tuple[Parsed, Upload]] = []
        for p in parsed:
            for upload in p.uploads:
                if (upload.url, upload.etag) in known:
                    p.duplicates += 1
                elif self.settings.events_sidecar and SIDECAR.match(upload.key):
                    p.sidecars += 1  # read with its card's images, not a job itself
                else:
                    todo.append((p, upload))
        ups = [u for _, u in todo]
        # S3 requests run side by side on a pool; without any, the pool's hand-offs are pure cost
        pool_map = self._heads.map if self.sides.reads_uploads else map
        found = pool_map(self._side_or_none, ups)
        for (p, _), side in zip(todo, found, strict=True):
            if side is None:
                p.deferred = True
            elif not p.deferred:
                p.sides.append(side)
        for p in parsed:
            if p.deferred:
                p.sides = []  # the whole message comes back later

    def _side_or_none(self, upload: Upload) -> Side | None:
        try:
            return self.sides.side(upload)
        except Deferred as exc:
            log.warning("S3 unavailable; the message will come back", error=str(exc))
            return None

    # --- record and delete (the calling thread) -----------------------------------------

    def _commit(self, group: list[Received]) -> PollStats:
        stats, handled = self._record(group)
        stats.deleted = self._delete(handled)
        return stats

    def _record(self, group: list[Received]) -> tuple[PollStats, list[dict[str, Any]]]:
        """Commit what the receives brought; the messages that may now be deleted."""
        parsed = [p for r in group for p in r.parsed]
        stats = PollStats(received=len(parsed))
        if not parsed:
            return stats, []
        self._keep_invisible(group)
        extra = []
        for p in parsed:
            if p.poison is not None:
                stats.poison += 1
                extra.append(poison_job(self.batch_id, p.poison, str(p.message.get("MessageId", "?"))))
            elif not p.uploads:
                stats.ignored += 1
            for n, reason in enumerate([] if p.deferred else p.rejected, 1):  # refused beside usable ones
                stats.poison += 1
                mid = f"{p.message.get('MessageId', '?')}#{n}"
                extra.append(poison_job(self.batch_id, reason, mid))
            stats.deferred += int(p.deferred)
            stats.sidecars += p.sidecars
            stats.duplicates += p.duplicates
        sides = [s for p in parsed for s in p.sides]
        outcome = record_sides(sides, self.publish, self.now(), extra)
        stats.jobs, stats.rejected, stats.paired = outcome.jobs, outcome.rejected, outcome.paired
        stats.pending, stats.duplicates = outcome.pending, stats.duplicates + outcome.duplicates
        self._set_aside([p for p in parsed if p.poison is not None])
        self._keep_invisible(group)
        return stats, [p.message for p in parsed if not p.deferred]

    def sweep(self) -> PollStats:
        """Resolve every card whose pairing window has ended (page by page)."""
        out = sweep_all(self.publish, self.now(), self.settings.events_pair_window_s)
        return PollStats(jobs=out.jobs, rejected=out.rejected, paired=out.paired)

    def _keep_invisible(self, group: list[Received]) -> None:
        """Extend the visibility timeout of receives whose handling has used half of it."""
        timeout = self.settings.events_visibility_s
        for received in group:
            if self.clock() - received.received_at < timeout / 2:
                continue
            for chunk in _chunks([p.message for p in received.parsed]):
                self.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": timeout}
                        for i, m in enumerate(chunk)
                    ],
                )
            received.received_at = self.clock()

    def _set_aside(self, poison: list[Parsed]) -> None:
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
        deleted = 0
        for chunk in _chunks(messages):
            response = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            if response.get("Failed"):  # they come back after the timeout and are duplicates then
                log.warning("some SQS deletes failed", failed=len(response["Failed"]))
            deleted += len(response.get("Successful", []))
        return deleted

    # --- the loops ----------------------------------------------------------------------

    def poll_once(self, wait_s: int | None = None, max_messages: int = SQS_MAX_BATCH) -> PollStats:
        """One receive, handled to the end, then the sweep (no pool: the baseline's path)."""
        started = self.clock()
        wait = self.settings.events_wait_s if wait_s is None else wait_s
        stats = self._commit([self._receive(wait, max_messages)])
        stats.add(self.sweep())
        stats.elapsed_s = self.clock() - started
        return stats

    def run(
        self,
        *,
        max_messages: int | None = None,
        until_idle: bool = False,
        wait_s: int | None = None,
        stop: threading.Event | None = None,
    ) -> PollStats:
        """Poll until ``stop`` is set, ``max_messages`` were handled, or (``until_idle``) the
        queue answers empty; receives run ``events_concurrency`` at a time."""
        wait = self.settings.events_wait_s if wait_s is None else wait_s
        return self._run(wait, max_messages, until_idle, stop)

    def _run(
        self, wait: int, max_messages: int | None, until_idle: bool, stop: threading.Event | None
    ) -> PollStats:
        total = PollStats()
        started = last_sweep = self.clock()
        deleting: set[Future[int]] = set()
        n = self.settings.events_concurrency
        with (
            ThreadPoolExecutor(n, thread_name_prefix="listen") as pool,
            ThreadPoolExecutor(2, thread_name_prefix="listen-delete") as deleter,
        ):
            receivers = Receivers(pool, lambda: self._receive(wait), n, max_messages, until_idle, stop)
            receivers.start()
            try:
                self._loop(receivers, deleter, deleting, total, last_sweep)
            except BaseException:
                receivers.stop_all()  # the pool's shutdown then waits only for receives in flight
                raise
            total.add(self.sweep())
            total.deleted += sum(f.result() for f in deleting)
        total.elapsed_s = self.clock() - started
        log.info("listener stopped", events_per_s=round(total.events_per_s, 1), received=total.received)
        return total

    def _loop(
        self,
        receivers: Receivers,
        deleter: ThreadPoolExecutor,
        deleting: set[Future[int]],
        total: PollStats,
        last_sweep: float,
    ) -> None:
        """Commit what the receives bring until every receive slot has stopped."""
        while not receivers.finished():
            try:
                first = receivers.results.get(timeout=self.settings.events_sweep_s)
            except queue.Empty:
                total.add(self.sweep())
                last_sweep = self.clock()
                continue
            done = [first, *receivers.drain(GATHER_S)]
            receivers.unpark()  # the buffer is empty again: parked slots receive again
            group = [f.result() for f in done]  # a receive that failed raises here
            stats, handled = self._record(group)
            if handled:  # committed: deleting them no longer holds up the next commit
                deleting.add(deleter.submit(self._delete, handled))
            finished = {f for f in deleting if f.done()}
            deleting.difference_update(finished)
            stats.deleted = sum(f.result() for f in finished)  # a failed delete raises here
            if stats.received:
                log.debug("events recorded", **{k: v for k, v in vars(stats).items() if v})
            total.add(stats)
            if self.clock() - last_sweep >= self.settings.events_sweep_s:
                total.add(self.sweep())
                last_sweep = self.clock()


def _chunks(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [messages[i : i + SQS_MAX_BATCH] for i in range(0, len(messages), SQS_MAX_BATCH)]
