"""The embedded mode: SQLite, in-memory broker, in-process worker, simulator on loopback.

``idbatch demo`` and ``idbatch submit`` (when the broker is ``memory://``) use this to
run a real batch end to end inside one process with the production task code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import Celery
from rich.console import Console

import workers.tasks  # noqa: F401 - registers the tasks the in-process worker runs
from app.env import apply_env as apply_env  # re-exported: callers import it from here
from app.render import follow
from db.migrate import upgrade
from db.reports import ingest_state, status_counts
from db.session import session_scope
from dispatch import app as dispatch_app
from idbatch.domain import TERMINAL_STATUSES, JobStatus
from idbatch.gateway import create_app as create_gateway
from idbatch.servers import BackgroundServer
from idbatch.settings import Settings, private_dir
from workers.embedded import embedded_worker
from workers.sweeper import sweeper_thread


def current_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``, made the one this process publishes on."""
    return dispatch_app.install(dispatch_app.create_celery(settings, include=["workers.tasks"]))


@contextmanager
def image_gateway(settings: Settings, *folders: Path) -> Iterator[BackgroundServer]:
    """Serve local images under ``folders`` (and IDBATCH_IMAGE_ROOTS) for the block's duration."""
    roots = [*folders, *settings.image_roots]
    server = BackgroundServer(create_gateway(settings.gateway_secret.get_secret_value().encode(), roots))
    with server:
        yield server


def wait_for_batch(batch_id: int, console: Console, timeout_s: float | None = None) -> bool:
    def poll() -> tuple[int, int, dict[str, int], bool]:
        with session_scope() as session:
            counts = status_counts(session, batch_id)
            ingested, total_rows = ingest_state(session, batch_id)
        done = sum(n for s, n in counts.items() if JobStatus(s) in TERMINAL_STATUSES)
        jobs = sum(counts.values())
        return done, jobs, counts, ingested and done == jobs == total_rows

    return follow(poll, console, timeout_s=timeout_s)


@contextmanager
def embedded_stack(settings: Settings, concurrency: int | None = None) -> Iterator[Any]:
    """Migrated database + in-process worker consuming the in-memory broker.

    The sweeper thread publishes due retries (retries are rows, not countdown messages).
    """
    upgrade(settings.database_url)
    app = current_app(settings)
    # The in-process worker shares the terminal with the progress bar: Celery's per-task
    # lines (and kombu's note that memory:// has no host) would bury it. A real
    # `idbatch worker` logs them; here the report at the end says what happened.
    # The levels are given back afterwards: a process that goes on (tests, a later
    # configure_logging) must not inherit a silenced Celery.
    quieted = {name: logging.getLogger(name).level for name in ("celery", "kombu")}
    for name in quieted:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with (
            embedded_worker(app, concurrency or settings.worker_concurrency, settings.queue) as worker,
            sweeper_thread(settings, app),
        ):
            yield worker
    finally:
        for name, level in quieted.items():
            logging.getLogger(name).setLevel(level)


def data_path(settings: Settings, *parts: str) -> Path:
    """A folder under the data dir, which is this user's only (demo cards, manifests)."""
    private_dir(settings.data_dir)
    return private_dir(settings.data_dir.joinpath(*parts))


def wait_for_open_jobs(batch_id: int, console: Console, timeout_s: float | None = None) -> bool:
    """Follow a batch until none of its jobs is queued, running or waiting for a retry.

    For commands that send part of a batch again (retry-failed, rerun, release): cards a
    rerun's budget holds stay ``pending`` by design, so "every job terminal" would never come.
    """
    open_states = {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRY_WAIT}

    def poll() -> tuple[int, int, dict[str, int], bool]:
        with session_scope() as session:
            counts = status_counts(session, batch_id)
        still_open = sum(n for s, n in counts.items() if JobStatus(s) in open_states)
        jobs = sum(counts.values())
        return jobs - still_open, jobs, counts, still_open == 0

    return follow(poll, console, timeout_s=timeout_s)


@contextmanager
def processing(settings: Settings, console: Console, *folders: Path) -> Iterator[tuple[Any, Any]]:
    """Where the jobs a command publishes are processed: ``(publish, follow)``.

    With a real broker, on the broker for ``idbatch worker`` (``follow`` does nothing). With
    the in-memory broker (embedded mode) nobody else could receive them, so they run in
    this process, as ``submit`` does: an image gateway for ``folders``, the in-process
    worker and its sweeper run for the block, and ``follow(batch)`` waits (with the
    progress bar) until the batch has no open job left.
    """
    from dispatch.publish import publish_jobs

    if not settings.broker_url.startswith("memory://"):
        yield publish_jobs, lambda _batch: None
        return
    with image_gateway(settings, *folders) as gw:
        settings = apply_env({"IDBATCH_GATEWAY_URL": gw.url})
        # The progress bar goes to stderr: these commands print their result as JSON on
        # stdout, for scripts to read.
        progress = Console(stderr=True, force_terminal=console.is_terminal)
        with embedded_stack(settings):
            yield publish_jobs, lambda batch: wait_for_open_jobs(batch, progress)


def source_folder(batch_id: int) -> list[Path]:
    """The folder of a batch's local manifest (its images' root), if it came from one."""
    from db.models import Batch

    with session_scope() as session:
        batch = session.get(Batch, batch_id)
        source = batch.source if batch is not None else ""
    if not source or "://" in source:
        return []
    return [Path(source).resolve().parent]
