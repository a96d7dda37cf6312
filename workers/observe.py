"""Celery signal hooks: our logging pipeline instead of Celery's, and /metrics per process.

Imported by ``workers.celery_app``, so ``idbatch worker``, ``idbatch beat`` and a plain
``celery -A workers.celery_app worker|beat`` behave the same.

- ``setup_logging``: connecting it tells Celery not to configure logging at all; we
  install ``idbatch.logging`` (structlog ``ProcessorFormatter`` on the root logger) so
  Celery's own lines are rendered, JSON-encoded and redacted like ours.
- ``worker_init`` / ``beat_init``: start the /metrics server (``IDBATCH_METRICS_PORT``);
  beat also serves the backlog gauge (``workers.metrics``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from typing import Any

import celery.apps.worker
from celery.signals import beat_init, setup_logging, worker_init, worker_process_shutdown

from idbatch.logging import configure
from idbatch.pii import scrub
from idbatch.settings import get_settings
from workers import metrics
from workers.tracing import setup_tracing


def _level(loglevel: Any) -> str | int:
    if isinstance(loglevel, int):
        return loglevel
    if isinstance(loglevel, str) and loglevel:
        return loglevel.upper()
    return get_settings().log_level


def _say_json(msg: str, f: Any = sys.__stderr__) -> None:
    """Celery's ``safe_say`` (shutdown notices, written from signal handlers straight to a
    file descriptor, past logging) as one JSON line. Like the original it takes no lock,
    so it is as safe inside a signal handler."""
    line = {
        "event": scrub(str(msg).strip()),
        "level": "warning",
        "logger": "celery.apps.worker",
        "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
    }
    with contextlib.suppress(OSError, AttributeError, ValueError):  # best effort, as Celery's
        os.write(f.fileno(), (json.dumps(line, ensure_ascii=False) + "\n").encode())


@setup_logging.connect(weak=False)
def _setup_logging(loglevel: Any = None, **_: Any) -> None:
    settings = get_settings()
    configure(_level(loglevel), settings.log_json)
    if settings.log_json:
        celery.apps.worker.safe_say = _say_json


@worker_init.connect(weak=False)
def _worker_metrics(**_: Any) -> None:
    settings = get_settings()
    setup_tracing(settings, "worker")  # before the worker builds its client and engine
    metrics.serve(settings, with_backlog=False)


@beat_init.connect(weak=False)
def _beat_metrics(**_: Any) -> None:
    settings = get_settings()
    setup_tracing(settings, "beat")
    metrics.serve(settings, with_backlog=True)


@worker_process_shutdown.connect(weak=False)
def _process_exit(**_: Any) -> None:
    metrics.process_exited(os.getpid())
