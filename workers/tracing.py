"""Optional OpenTelemetry tracing (``IDBATCH_OTEL_ENABLED=true``; the ``otel`` extra).

Off by default: no import of OpenTelemetry happens unless asked. When on, every worker
(and beat, and ``listen``) exports spans over OTLP/HTTP (``OTEL_EXPORTER_OTLP_ENDPOINT``
and the other standard ``OTEL_*`` variables) for Celery tasks (a delivery and what it
published), httpx calls to providers and SQLAlchemy statements. Spans carry no PII: httpx
spans name the method, URL and status (provider endpoints, never a body), SQL spans the
statement text with its placeholders, never bound values (``enable_commenter`` off).
"""

from __future__ import annotations

from typing import Any

from idbatch.logging import get_logger
from idbatch.settings import Settings

log = get_logger(__name__)

_instrumentors: list[Any] = []


def setup_tracing(settings: Settings, service: str, *, exporter: Any = None) -> bool:
    """Instrument Celery, httpx and SQLAlchemy once; True when tracing is on.

    Call it before the process builds its httpx client and database engine (worker
    start-up): the instrumentation wraps clients and engines created afterwards.
    ``exporter`` replaces the OTLP exporter (tests pass an in-memory one).
    """
    if not settings.otel_enabled or _instrumentors:
        return bool(_instrumentors)
    try:
        from opentelemetry import trace
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        log.error("IDBATCH_OTEL_ENABLED=true but the otel extra is missing: pip install 'idbatch[otel]'")
        return False
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"{settings.otel_service_name}-{service}"})
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    for instrumentor, kwargs in (
        (CeleryInstrumentor(), {}),  # type: ignore[no-untyped-call]
        (HTTPXClientInstrumentor(), {}),
        (SQLAlchemyInstrumentor(), {"enable_commenter": False}),
    ):
        instrumentor.instrument(tracer_provider=provider, **kwargs)
        _instrumentors.append(instrumentor)
    log.info("tracing on", service=service)
    return True


def stop_tracing() -> None:
    """Undo the instrumentation (tests; a process exiting needs nothing)."""
    while _instrumentors:
        _instrumentors.pop().uninstrument()
