"""structlog set-up with PII redaction as the last processor before rendering.

Redaction happens in the pipeline rather than at call sites because a call site that
forgets is exactly the one that leaks an ID number into a log aggregator.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from idbatch.pii import PII_KEYS, scrub


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        value = event[key]
        if key in PII_KEYS:
            event[key] = "<redacted>"
        elif isinstance(value, str):
            event[key] = scrub(value)
    return event


class _StderrLogger:
    """Writes each line to whatever ``sys.stderr`` is *now*.

    ``PrintLoggerFactory(file=sys.stderr)`` binds the stream at configure time; when that
    stream is a temporary one (a CLI runner's, a redirect), cached loggers later write to
    a closed file.
    """

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _stderr_logger(*_: Any) -> _StderrLogger:
    return _StderrLogger()


def configure(level: str = "INFO", json_logs: bool = False) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
