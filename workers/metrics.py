"""The /metrics server of worker and beat processes, and the gauges read only when scraped.

Counters are incremented where things happen (``idbatch.metrics``). Broker queue depth and
the backlog of open jobs are *read* at scrape time by collectors here, so they cost the
per-job path nothing: the queue depth is one broker round trip per scrape, the backlog
one GROUP BY per scrape, served by beat only (one per deployment) so that N workers do
not each count a million-row job table every 15 s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from db.ops import backlog
from db.session import session_scope
from dispatch.app import celery_app
from dispatch.publish import broker_queue_depth
from idbatch.logging import get_logger
from idbatch.settings import Settings

log = get_logger(__name__)


class QueueDepthCollector(Collector):
    """Messages waiting on the broker, per queue; -1 when the broker cannot be read."""

    def __init__(self, settings: Settings) -> None:
        self.queues = [settings.queue]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "idbatch_broker_queue_depth", "Messages waiting on the broker (-1: unknown)", labels=["queue"]
        )
        app = celery_app()
        for queue in self.queues:
            depth = broker_queue_depth(app, queue)
            family.add_metric([queue], -1 if depth is None else depth)
        yield family

    def describe(self) -> list[Any]:
        return []  # never collect at registration: the broker may not be up yet


class BacklogCollector(Collector):
    """Open jobs of active batches by provider and status (the ETA's numerator)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "idbatch_backlog_jobs", "Open jobs of active batches", labels=["provider", "status"]
        )
        try:
            with session_scope() as session:
                rows = backlog(session)
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even with the database away
            log.warning("cannot read the backlog", error=type(exc).__name__)
            rows = []
        for provider, status, n in rows:
            family.add_metric([provider, status], n)
        yield family

    def describe(self) -> list[Any]:
        return []


def serving_registry(settings: Settings, *, with_backlog: bool) -> CollectorRegistry:
    """The registry to expose: every process's values in multi-process mode, else this one's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    registry.register(QueueDepthCollector(settings))
    if with_backlog:
        registry.register(BacklogCollector())
    return registry


_served: dict[int, Any] = {}


def serve(settings: Settings, *, with_backlog: bool) -> int | None:
    """Start the /metrics HTTP server (a daemon thread) on ``metrics_port``; its port, or None.

    Port 0 means no server. A port already taken is logged, not fatal: a worker that
    cannot expose metrics must still work.
    """
    port = settings.metrics_port
    if not port:
        return None
    if port in _served:
        return port
    try:
        registry = serving_registry(settings, with_backlog=with_backlog)
        _served[port] = start_http_server(port, addr=settings.metrics_host, registry=registry)
    except OSError as exc:
        log.error("cannot serve metrics", port=port, error=str(exc))
        return None
    log.info("serving metrics", port=port, host=settings.metrics_host)
    return port


def process_exited(pid: int) -> None:
    """Multi-process mode: drop a dead process's live gauges (in-flight calls)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
