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

import os
from typing import Any

from celery.signals import beat_init, setup_logging, worker_init, worker_process_shutdown

from idbatch.logging import configure
from idbatch.settings import get_settings
from workers import metrics


def _level(loglevel: Any) -> str | int:
    if isinstance(loglevel, int):
        return loglevel
    if isinstance(loglevel, str) and loglevel:
        return loglevel.upper()
    return get_settings().log_level


@setup_logging.connect(weak=False)
def _setup_logging(loglevel: Any = None, **_: Any) -> None:
    configure(_level(loglevel), get_settings().log_json)


@worker_init.connect(weak=False)
def _worker_metrics(**_: Any) -> None:
    metrics.serve(get_settings(), with_backlog=False)


@beat_init.connect(weak=False)
def _beat_metrics(**_: Any) -> None:
    metrics.serve(get_settings(), with_backlog=True)


@worker_process_shutdown.connect(weak=False)
def _process_exit(**_: Any) -> None:
    metrics.process_exited(os.getpid())
