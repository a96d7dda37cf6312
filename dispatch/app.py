"""Build the Celery app. Every broker option is set here, deliberately, with the reason.

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only
  after the job's transaction committed, so a worker killed mid-call leaves the message
  to be redelivered; the job's lease in Postgres makes that redelivery harmless.
- ``worker_prefetch_multiplier = 1``: a thread pool of N already reserves N messages;
  more would strand messages on a dead worker until the visibility timeout.
- ``visibility_timeout``: how long Redis waits before redelivering an unacked message.
  It must exceed the longest task (one provider call with its timeout plus two short
  transactions; retries are separate deliveries), so one hour is ample. Recovery does
  not wait for it: the sweeper re-publishes a dead worker's job once its lease
  (``lease_s``) expires, and the lease, not the broker, decides who may work on a job.
- Warm shutdown (SIGTERM) stops consuming, lets the threads finish their in-flight
  calls and record their attempts, and returns unstarted prefetched messages to Redis.
- Retries are not Celery countdown/ETA messages: Redis loses them on restart and
  re-delivers them after the visibility timeout. A job waiting to retry is ``retry_wait``
  in Postgres; the ``idbatch.sweep`` beat task (every ``sweep_interval_s``, on its own
  queue so a long backlog cannot delay it, expiring so missed runs do not pile up)
  publishes due jobs, lost messages and dead workers' jobs (see workers.sweeper).
  Workers consume that queue too; run ``idbatch beat`` (or ``celery -A
  workers.celery_app beat``) once — two beats are harmless, the sweep locks its rows.
- No result backend: Postgres holds every outcome; results in Redis would be a second,
  lossy truth.
- Memory transport (embedded mode) polls every 10 ms instead of once a second, so the
  in-process broker is never the bottleneck.
- Both queues are declared in ``task_queues`` and the pool, concurrency and events come
  from settings, so a plain ``celery -A workers.celery_app worker`` behaves exactly like
  ``idbatch worker``; beat keeps its schedule file under the data dir, which
  ``DataDirScheduler`` creates, so ``celery -A workers.celery_app beat`` starts anywhere.

Messages are sent by task *name* (``VERIFY``, ``VERIFY_MANY``, ``FAN_OUT``, ``SWEEP``, ``FIRE_SCHEDULES``,
the rerun schedules' beat hook, routed with the sweep so a backlog cannot delay it): the app built here
knows no task objects, so producers can publish without importing workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from celery import Celery
from celery.beat import PersistentScheduler
from kombu import Queue  # type: ignore[attr-defined]

from idbatch.settings import Settings, get_settings

VERIFY = "idbatch.verify"
VERIFY_MANY = "idbatch.verify_many"  # issue 17: one message for a group of jobs
FAN_OUT = "idbatch.fan_out"
SWEEP = "idbatch.sweep"
# Issue 14: the Celery-native entry other services call with send_task (producers.api.entry),
# and the webhook tasks (workers.webhooks).
SUBMIT = "idbatch.submit"
WEBHOOK_DELIVER = "idbatch.webhooks.deliver"
WEBHOOK_SWEEP = "idbatch.webhooks.sweep"
FIRE_SCHEDULES = "idbatch.fire_schedules"  # issue 15: rerun schedules (workers.schedules)
# Issue 19: upload sides whose pairing window ended, resolved even with no listener running
# (producers.events_beat; a listener also sweeps from its own loop).
EVENTS_SWEEP = "idbatch.events.sweep"


def sweep_queue(settings: Settings) -> str:
    return f"{settings.queue}.sweep"


class DataDirScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's file-backed beat scheduler, creating the data dir its file lives in."""

    def setup_schedule(self) -> None:
        Path(self.schedule_filename).parent.mkdir(parents=True, exist_ok=True)
        super().setup_schedule()


def create_celery(settings: Settings, include: Sequence[str] = ()) -> Celery:
    app = Celery("idbatch", broker=settings.broker_url, include=list(include))
    transport_options: dict[str, Any] = {"visibility_timeout": 3600}
    if settings.broker_url.startswith("memory://"):
        transport_options = {"polling_interval": 0.01}
    app.conf.update(
        task_default_queue=settings.queue,
        task_queues=[Queue(settings.queue), Queue(sweep_queue(settings))],  # type: ignore[no-untyped-call]
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=settings.celery_events,
        task_send_sent_event=settings.celery_events,
        broker_transport_options=transport_options,
        task_routes={
            SWEEP: {"queue": sweep_queue(settings)},
            WEBHOOK_SWEEP: {"queue": sweep_queue(settings)},
            FIRE_SCHEDULES: {"queue": sweep_queue(settings)},
            EVENTS_SWEEP: {"queue": sweep_queue(settings)},
        },
        beat_scheduler=f"{__name__}:DataDirScheduler",
        beat_schedule={
            "sweep": {
                "task": SWEEP,
                "schedule": settings.sweep_interval_s,
                "options": {"expires": max(1.0, settings.sweep_interval_s * 2)},
            },
            "webhooks": {
                "task": WEBHOOK_SWEEP,
                "schedule": settings.sweep_interval_s,
                "options": {"expires": max(1.0, settings.sweep_interval_s * 2)},
            },
            "events-pairing": {
                "task": EVENTS_SWEEP,
                "schedule": settings.sweep_interval_s,
                "options": {"expires": max(1.0, settings.sweep_interval_s * 2)},
            },
            # Rerun schedules (issue 15): every beat sends it; a unique slot row fires once.
            "rerun-schedules": {
                "task": FIRE_SCHEDULES,
                "schedule": settings.schedule_check_s,
                "options": {"expires": max(1.0, settings.schedule_check_s * 2)},
            },
        },
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        enable_utc=True,
    )
    return app


_app: Celery | None = None


def celery_app() -> Celery:
    """This process's app (built from settings on first use): every message goes out on it."""
    return _app if _app is not None else install(create_celery(get_settings()))


def install(app: Celery) -> Celery:
    """Make ``app`` the one this process publishes on (and Celery's current/default app)."""
    global _app
    app.set_current()
    app.set_default()
    _app = app
    return app


def reset() -> None:
    """Forget the app (after settings change)."""
    global _app
    _app = None
