"""Build the Celery app. Every broker option is set here, deliberately, with the reason.

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only
  after the job's transaction committed, so a worker killed mid-call leaves the message
  to be redelivered; the job's lease in Postgres makes that redelivery harmless.
- ``worker_prefetch_multiplier = 1``: a thread pool of N already reserves N messages;
  more would strand messages on a dead worker until the visibility timeout.
- ``visibility_timeout``: how long Redis waits before redelivering an unacked message.
  It must exceed the longest task (a call with timeout and retries inside it: never,
  since retries are new messages), so one hour is ample and bounds recovery time.
- No result backend: Postgres holds every outcome; results in Redis would be a second,
  lossy truth.
- Memory transport (embedded mode) polls every 10 ms instead of once a second, so the
  in-process broker is never the bottleneck.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from idbatch.settings import Settings


def create_celery(settings: Settings) -> Celery:
    app = Celery("idbatch", broker=settings.broker_url, include=["workers.tasks"])
    transport_options: dict[str, Any] = {"visibility_timeout": 3600}
    if settings.broker_url.startswith("memory://"):
        transport_options = {"polling_interval": 0.01}
    app.conf.update(
        task_default_queue=settings.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        enable_utc=True,
    )
    return app
