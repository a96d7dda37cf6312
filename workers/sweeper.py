"""The sweeper: re-publish jobs from Postgres alone, so the broker is never the truth.

Redis here keeps nothing on disk, so a restart loses every queued message; a worker
killed with SIGKILL leaves its job ``running`` under a lease nobody renews. The sweeper
finds such jobs in the job table and publishes a fresh message for each. It is also the
retry dispatcher: a failed attempt leaves the job ``retry_wait`` with ``next_attempt_at``
in Postgres (no Celery countdown message, which Redis would lose on restart and which
Celery re-delivers after the visibility timeout), and the sweeper publishes it when due.

What it re-publishes, per active batch:

- ``retry_wait`` jobs whose ``next_attempt_at`` has passed: moved to ``queued``.
- ``running`` jobs whose lease expired (the worker died), once per expiry.
- ``queued``/``pending`` jobs whose last message is older than ``requeue_after_s``,
  but only when the broker queue is empty — otherwise their message is most likely
  still waiting behind a long backlog, and re-publishing would double the queue. A job
  older than ``HARD_REQUEUE_S`` (the broker's visibility timeout) is re-published anyway.

A duplicate message is always harmless: ``claim()`` lets only one worker hold a job.
Two sweepers never publish the same job twice in one pass (``db.sweeps`` locks and
stamps the candidates in one transaction). Messages are published after the commit
(``dispatch.publish.after_commit``); if publishing fails the stamp ages and the next
sweep publishes again.

Runs as the Celery beat task ``idbatch.sweep``, from ``idbatch resume``, and as a
background thread in the embedded mode.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from celery import Celery

from db import sweeps
from db.models import utcnow
from dispatch.app import celery_app
from dispatch.publish import Publisher, after_commit, broker_queue_depth, on, publish_jobs
from idbatch import metrics
from idbatch.logging import get_logger
from idbatch.settings import Settings

log = get_logger(__name__)

HARD_REQUEUE_S = 3600.0  # = the broker's visibility timeout (dispatch.app)


@dataclass
class SweepResult:
    due_retries: int = 0
    expired_leases: int = 0
    lost_messages: int = 0
    cancelled: int = 0
    finished: int = 0  # batches stamped finished in this pass

    @property
    def published(self) -> int:
        return self.due_retries + self.expired_leases + self.lost_messages


def _drain(found: sweeps.Selection, publish: Publisher) -> int:
    where, values = found
    total = 0
    while True:
        n = sweeps.take_page(where, values(), lambda session, ids: after_commit(session, publish, ids))
        total += n
        if n < sweeps.PAGE:
            return total


def sweep(
    settings: Settings,
    publish: Publisher = publish_jobs,
    *,
    queue_depth: Callable[[], int | None] | None = None,
    batch_id: int | None = None,
    force: bool = False,
    now: Callable[[], dt.datetime] = utcnow,
) -> SweepResult:
    """One pass. ``force`` re-publishes every queued job of ``batch_id`` (``resume``)."""
    result = SweepResult()
    t = now()
    result.due_retries = _drain(sweeps.due_retries(t, batch_id, now), publish)
    requeue_cutoff = t - dt.timedelta(seconds=settings.requeue_after_s)
    result.expired_leases = _drain(sweeps.expired_leases(t, requeue_cutoff, batch_id, now), publish)
    if force:
        cutoff = t
    else:
        depth = queue_depth() if queue_depth is not None else None
        cutoff = requeue_cutoff if depth == 0 else t - dt.timedelta(seconds=HARD_REQUEUE_S)
    result.lost_messages = _drain(sweeps.lost_messages(cutoff, batch_id, now), publish)
    result.cancelled = sweeps.close_dead_cancelled(t)
    result.finished = sweeps.finish_batches(t, batch_id)
    metrics.republished("due_retry", result.due_retries)
    metrics.republished("expired_lease", result.expired_leases)
    metrics.republished("lost_message", result.lost_messages)
    if result.published or result.cancelled:
        # Due retries are routine (every pass of a busy batch): DEBUG, counted in metrics.
        # Expired leases (a worker died) and lost messages (the broker lost them) are news.
        news = result.expired_leases or result.lost_messages or result.cancelled
        (log.info if news else log.debug)(
            "sweep",
            due_retries=result.due_retries,
            expired_leases=result.expired_leases,
            lost_messages=result.lost_messages,
            cancelled=result.cancelled,
        )
    return result


def sweep_with_app(settings: Settings, app: Celery | None = None, **kwargs: object) -> SweepResult:
    """A sweep that publishes on ``app`` and probes its broker for the queue depth."""
    app = app or celery_app()
    return sweep(
        settings,
        on(app),
        queue_depth=lambda: broker_queue_depth(app, settings.queue),
        **kwargs,  # type: ignore[arg-type]
    )


@contextmanager
def sweeper_thread(settings: Settings, app: Celery) -> Iterator[threading.Thread]:
    """Embedded mode: sweep every ``sweep_interval_s`` in a daemon thread of this process."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(settings.sweep_interval_s):
            try:
                sweep_with_app(settings, app)
            except Exception as exc:  # noqa: BLE001 - keep sweeping; the next pass retries
                log.warning("sweep failed", error=str(exc))

    thread = threading.Thread(target=loop, name="idbatch-sweeper", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(10)
