"""moto's SQS backend made safe for concurrent requests (tests/s3 and bench/moto_fast.py)."""

from __future__ import annotations

import threading
from typing import Any


def serialize_sqs() -> None:
    """One SQS operation at a time in moto's backend, as SQS itself is atomic per call.

    moto's SQS models are not thread-safe: two ``ReceiveMessage`` calls on one queue at
    once race on its pending-message set (``RuntimeError: Set changed size during
    iteration``, an HTTP 500 *after* the messages were marked received, so they stay
    invisible for the whole visibility timeout). The listener keeps several receives in
    flight; against real SQS that is safe, against moto it needs this lock.
    """
    from moto.sqs import models

    if getattr(models.SQSBackend, "_idbatch_serialized", False):
        return
    lock = threading.RLock()
    for name in (
        "send_message",
        "send_message_batch",
        "receive_message",
        "delete_message",
        "delete_message_batch",
        "change_message_visibility",
        "change_message_visibility_batch",
    ):
        original = getattr(models.SQSBackend, name)

        def locked(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(*args, **kwargs)

        setattr(models.SQSBackend, name, locked)
    waiting = models.Queue.wait_for_messages

    def wait_unlocked(self: Any, timeout: int) -> None:
        lock.release()  # a long poll waits for sends: it must not hold them off
        try:
            waiting(self, timeout)
        finally:
            lock.acquire()

    models.Queue.wait_for_messages = wait_unlocked  # type: ignore[method-assign]
    models.SQSBackend._idbatch_serialized = True  # type: ignore[attr-defined]
