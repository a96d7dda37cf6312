"""moto's server (``moto_server``) with its SQS queue-depth hot spots made O(1), for bench/events.py.

moto stands in for AWS here; its costs are not ones production pays, but they run on
the same two cores as the listener, so they cap what the benchmark can show. Profiled
with py-spy (README, "Performance"; docs/events.md for the listener), moto 5.2.5 spent
~48% of its CPU in ``Queue.attributes``, which counts every message of the queue three
times (visible, delayed, in flight), each count calling ``utcnow`` per message:

- ``ReceiveMessage`` asks for it once per *message returned*
  (``is_message_valid_based_on_retention_period`` reads ``MessageRetentionPeriod``
  through ``get_queue_attributes``, which builds the whole attribute dict once per name);
- ``SendMessage`` asks for it once per message sent (``ContentBasedDeduplication``,
  a FIFO-only attribute).

Both patches return exactly what moto computed, without the counts: the retention
period is read from the queue, and ``ContentBasedDeduplication`` is read from the queue
for FIFO queues (a standard queue has no such attribute). Routing each request to its
service listed moto's package directory (``list_of_moto_modules``: a listdir and an
isdir per entry, ~12%): that list is read once here. Werkzeug's per-request INFO
log line (formatted even when stderr goes nowhere, ~8%) is turned off. ``DeleteMessage``
walks the queue once per receipt handle instead of twice. ``ReceiveMessage`` walks every
message of the queue, in-flight ones too, reading the clock twice per message; here once
per walk. It also built and deep-copied the set of pending FIFO groups on every call, for
a standard queue as well, where it is never read.

HTTP keep-alive: werkzeug's development server answers every request with ``Connection:
close`` and then reads the socket dry (so keep-alive cannot simply be switched on), so
each boto3 call paid a TCP connect and moto a new thread. Here moto's WSGI app (the
same ``DomainDispatcherApplication`` ``moto_server`` serves) runs under uvicorn's WSGI
interface instead (httptools, keep-alive, a pool of 64 threads: long polls hold one
each); boto3's connection pool then reuses its connections. Nothing else of moto
changes: the requests, signing, XML/JSON, visibility and receipt handles are moto's.

    python bench/moto_fast.py -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path
from typing import Any

from moto import backends
from moto.core.utils import unix_time, unix_time_millis
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sqs import models

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.s3.moto_sqs import serialize_sqs  # the project root is on the path only now

_local = threading.local()
_full_attributes = models.Queue.attributes.fget  # type: ignore[attr-defined]


def _retention_ok(self: Any, queue_name: str, message: Any) -> bool:
    queue = self.get_queue(queue_name)
    retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000
    return bool(retain_until > unix_time())


def _attributes(self: Any) -> dict[str, Any]:
    if getattr(_local, "sending", False):  # send_message reads ContentBasedDeduplication only
        if not self.fifo_queue:
            return {}
        value = self.content_based_deduplication
        return {"ContentBasedDeduplication": str(value).lower() if isinstance(value, bool) else value}
    return dict(_full_attributes(self))


_send = models.SQSBackend.send_message


def _send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
    _local.sending = True
    try:
        return _send(self, *args, **kwargs)
    finally:
        _local.sending = False


def _delete_message(self: Any, receipt_handle: str) -> None:
    """moto's ``Queue.delete_message`` in one pass over the queue (it makes two: ``any`` to
    validate the handle, then a rebuild of the list); the same outcome and errors."""
    if receipt_handle in self.deleted_messages:
        return  # already deleted: SQS accepts a second delete
    kept, found = [], False
    for message in self._messages:
        # ``had_receipt_handle`` without building the list of handles per message
        handles = message._old_receipt_handles
        if not found and (message.receipt_handle == receipt_handle or receipt_handle in handles):
            self.pending_messages.discard(message)
            self.deleted_messages.update(message.all_receipt_handles)
            found = True
            continue
        kept.append(message)
    if not found:
        raise models.ReceiptHandleIsInvalid()
    self._messages = kept


def _visible_messages(self: Any) -> list[Any]:
    """moto's ``Queue.messages`` (visible, not delayed) with one clock read per call, not two
    per message: every ``ReceiveMessage`` walks the whole queue, in-flight messages too."""
    now = unix_time_millis()
    return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]


def _pending_groups(self: Any) -> set[str]:
    """moto's ``Queue.pending_message_groups``, read (and deep-copied) by every receive but
    used only for FIFO queues: a standard queue's is never consulted, so it is not built."""
    if not self.fifo_queue:
        return set()
    return {m.group_id for m in self._pending_messages if m.group_id is not None}


_modules = tuple(backends.list_of_moto_modules())  # moto's own package folders: fixed while it runs
backends.list_of_moto_modules = lambda: _modules
models.SQSBackend.is_message_valid_based_on_retention_period = _retention_ok  # type: ignore[method-assign]
models.Queue.attributes = property(_attributes)  # type: ignore[assignment,method-assign]
models.SQSBackend.send_message = _send_message  # type: ignore[method-assign]
models.Queue.delete_message = _delete_message  # type: ignore[method-assign]
models.Queue.messages = property(_visible_messages)  # type: ignore[assignment,method-assign]
models.Queue.pending_message_groups = property(_pending_groups)  # type: ignore[assignment,method-assign]
serialize_sqs()  # concurrent receives on one queue raced in moto (HTTP 500, messages hidden)
logging.getLogger("werkzeug").setLevel(logging.WARNING)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    from uvicorn.middleware.wsgi import WSGIMiddleware

    # A request holds one of these threads for its whole life, a long-polling
    # ReceiveMessage up to its WaitTimeSeconds: with uvicorn's default of 10, eight
    # listener receives waiting on an empty queue left the feeder's sends and the deletes
    # two threads, and the run crawled at ~15 events/s until the polls timed out.
    app = WSGIMiddleware(DomainDispatcherApplication(create_backend_app), workers=64)
    uvicorn.run(app, host=args.host, port=args.port, interface="asgi3", log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
