"""One logging pipeline for our logs and everybody else's (Celery, kombu, SQLAlchemy, uvicorn).

structlog renders through the standard library: our events go through
``ProcessorFormatter.wrap_for_formatter`` into a stdlib handler on the root logger, and
every foreign record (Celery's "Task … received", kombu's reconnects) reaches the same
handler, whose ``ProcessorFormatter`` gives both the same processors. So
``IDBATCH_LOG_JSON=true`` makes *every* line JSON and PII redaction is applied to every
line, not only to the ones we wrote. Redaction happens in the pipeline rather than at
call sites because a call site that forgets is exactly the one that leaks an ID number
into a log aggregator.

The sweep runs every two seconds; its routine lines (beat sending it, a worker receiving
it and reporting success) are demoted to DEBUG by ``QuietSweeps``, so an idle deployment
logs nothing at INFO.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from idbatch.pii import PII_KEYS, scrub

# The periodic tasks beat sends every few seconds (= dispatch.app.SWEEP, WEBHOOK_SWEEP,
# FIRE_SCHEDULES; the core cannot import dispatch): their routine lines are DEBUG.
PERIODIC_TASKS = ("idbatch.sweep", "idbatch.webhooks.sweep", "idbatch.fire_schedules")
# Loggers whose routine per-task lines name the task in the message.
_TASK_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace", "celery.worker.request")
# Libraries that log every request or plugin at INFO: a line per provider call would cost
# the hot path CPU and drown the rest; their warnings still come through.
_CHATTY = ("httpx", "httpcore", "alembic", "botocore", "urllib3")


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        value = event[key]
        if key in PII_KEYS:
            event[key] = "<redacted>"
        elif isinstance(value, str):
            event[key] = scrub(value)
    return event


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each line to whatever ``sys.stderr`` is *now*.

    A handler binds its stream when created; when that stream is a temporary one (a CLI
    runner's, a redirect), later lines would go to a closed file.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


class QuietSweeps(logging.Filter):
    """Demote the sweep's routine INFO lines (every 2 s) to DEBUG; drop them below the level."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.INFO
            and record.name in _TASK_LOGGERS
            and any(task in record.getMessage() for task in PERIODIC_TASKS)
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.level


def _handler_marker(handler: logging.Handler) -> bool:
    return getattr(handler, "_idbatch", False)


def configure(level: str | int = "INFO", json_logs: bool = False) -> None:
    """Configure structlog and the root logger (idempotent: re-running replaces our handler)."""
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # the traceback is scrubbed like the rest
            redact,
            renderer,
        ],
    )
    handler = _StderrHandler()
    handler._idbatch = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter)
    handler.addFilter(QuietSweeps(numeric))
    root = logging.getLogger()
    for old in [h for h in root.handlers if _handler_marker(h)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)  # warnings become log lines too (JSON in JSON mode)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
