"""The embedded mode: SQLite, in-memory broker, in-process worker, simulator on loopback.

``idbatch demo`` and ``idbatch submit`` (when the broker is ``memory://``) use this to
run a real batch end to end inside one process with the production task code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import Celery
from rich.console import Console

import workers.tasks  # noqa: F401 - registers the tasks the in-process worker runs
from app.render import follow
from db import session as db_session
from db.migrate import upgrade
from db.reports import ingest_state, status_counts
from db.session import session_scope
from dispatch import app as dispatch_app
from idbatch import pii
from idbatch.domain import TERMINAL_STATUSES, JobStatus
from idbatch.gateway import create_app as create_gateway
from idbatch.servers import BackgroundServer
from idbatch.settings import Settings, get_settings, private_dir
from workers import runtime as worker_runtime
from workers.embedded import embedded_worker
from workers.sweeper import sweeper_thread


def apply_env(values: dict[str, str]) -> Settings:
    """Set IDBATCH_* variables and rebuild everything cached from settings."""
    os.environ.update(values)
    get_settings.cache_clear()
    db_session.reset()
    worker_runtime.reset()
    dispatch_app.reset()
    pii.vault.cache_clear()
    return get_settings()


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
