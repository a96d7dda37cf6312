"""Prometheus metrics: the one list of what idbatch counts, and the helpers the hot path calls.

Definitions live in the core so that workers, producers and the CLI count into the same
objects without importing each other. Everything here is prometheus-client only: the
exposition server and the scrape-time collectors that need the database or the broker
(queue depth, backlog) live in ``workers.metrics``.

Multi-process: with ``PROMETHEUS_MULTIPROC_DIR`` set *before* this module is imported,
prometheus-client keeps every value in memory-mapped files in that directory and the
exposer sums them over processes (gauges say how: ``livesum``, ``max``). Without it each
process serves its own values, which is the normal case: an ``idbatch worker`` is one
process with a thread pool, each on its own port.

The per-job cost is a handful of counter increments on label children resolved once and
cached here (``labels()`` takes a lock and builds a tuple; issue 17 budgets 3 ms CPU per
job, this is microseconds). Nothing here queries anything.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# Seconds. Provider calls: the vendors' medians are 100-500 ms, timeouts tens of seconds.
CALL_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)
# Limiter waits are mostly 0 (a token at once) or a fraction of one token interval.
WAIT_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

JOBS = Counter(
    "idbatch_job_outcomes",
    "Processing outcomes of verify deliveries by the job's resulting status and batch kind "
    "(terminal statuses count jobs finished by workers; retry_wait counts retries scheduled)",
    ["status", "kind"],
)
CALLS = Counter(
    "idbatch_provider_calls", "Provider calls made (one per side sent)", ["provider", "account", "outcome"]
)
BILLABLE = Counter("idbatch_billable_calls", "Provider calls the vendor bills", ["provider", "account"])
ERRORS = Counter(
    "idbatch_provider_errors",
    "Provider calls that failed, by vendor code (or HTTP status, or the error class)",
    ["provider", "account", "code"],
)
LATENCY = Histogram(
    "idbatch_provider_call_seconds", "Provider call latency", ["provider"], buckets=CALL_BUCKETS
)
LIMITER_WAIT = Histogram(
    "idbatch_limiter_wait_seconds",
    "Time a call slept for its rate slot (granted slots only)",
    ["provider", "account"],
    buckets=WAIT_BUCKETS,
)
GRANTED_RATE = Gauge(
    "idbatch_limiter_granted_rate",
    "The shared limiter's current rate for the account (calls/s; lowered after a 429)",
    ["provider", "account"],
    multiprocess_mode="max",
)
CIRCUIT = Gauge(
    "idbatch_circuit_state",
    "Account circuit as this process last saw it: 0 closed, 1 open, 2 half-open (probing)",
    ["provider", "account"],
    multiprocess_mode="max",
)
IN_FLIGHT = Gauge(
    "idbatch_calls_in_flight", "Provider calls under way", ["provider"], multiprocess_mode="livesum"
)
DEFERRED = Counter(
    "idbatch_gate_deferrals", "Jobs put back without a call (circuit open, no token soon)", ["reason"]
)
SWEEPER = Counter("idbatch_sweeper_republished", "Jobs the sweeper published again, by why", ["reason"])
INGEST_ROWS = Counter(
    "idbatch_ingest_rows", "Manifest rows committed as jobs (rate() = ingest rows/s)", ["outcome"]
)

CIRCUIT_CLOSED, CIRCUIT_OPEN, CIRCUIT_HALF_OPEN = 0, 1, 2


@lru_cache(maxsize=4096)
def _child(metric: Any, *labels: str) -> Any:
    """A label child, resolved once (label sets are few: provider × account × code)."""
    return metric.labels(*labels)


def job_outcome(status: str, kind: str) -> None:
    _child(JOBS, status, kind).inc()


def observe_calls(
    provider: str, account: str, calls: Iterable[Any], *, failed_code: str | None = None
) -> None:
    """Count calls of one attempt; ``failed_code`` marks the last one as an error with that code."""
    calls = list(calls)
    for i, call in enumerate(calls):
        failed = failed_code is not None and i == len(calls) - 1
        _child(CALLS, provider, account, "error" if failed else "answered").inc()
        if call.billable:
            _child(BILLABLE, provider, account).inc()
        if call.latency_ms is not None:
            _child(LATENCY, provider).observe(call.latency_ms / 1000.0)
        if failed:
            _child(ERRORS, provider, account, failed_code or "unknown").inc()


def limiter_granted(provider: str, account: str, wait_s: float, rate: float) -> None:
    _child(LIMITER_WAIT, provider, account).observe(max(0.0, wait_s))
    if rate > 0:
        _child(GRANTED_RATE, provider, account).set(rate)


def circuit_state(provider: str, account: str, state: int) -> None:
    _child(CIRCUIT, provider, account).set(state)


def deferred(reason: str) -> None:
    _child(DEFERRED, reason).inc()


def in_flight(provider: str) -> Any:
    """The in-flight gauge child: ``with in_flight(p).track_inprogress():`` around a call."""
    return _child(IN_FLIGHT, provider)


def republished(reason: str, n: int) -> None:
    if n:
        _child(SWEEPER, reason).inc(n)


class IngestProgress:
    """This process's ingest so far, for the CLI's progress bar (not a Prometheus metric).

    ``source`` is the manifest's open file when it is one: its ``tell()`` against its size
    gives the fraction read, hence an ETA, without counting lines twice.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows = 0
        self.source: Any = None
        self.size: int | None = None

    def committed(self, rows: int, queued: int) -> None:
        with self._lock:
            self.rows += rows
        _child(INGEST_ROWS, "queued").inc(queued)
        _child(INGEST_ROWS, "rejected").inc(rows - queued)

    def fraction(self) -> float | None:
        source, size = self.source, self.size
        if source is None or not size:
            return None
        try:
            return min(1.0, float(source.tell()) / size)
        except (OSError, ValueError):  # closed meanwhile: the read is over
            return None


ingest_progress = IngestProgress()
