"""Optional tracing: with IDBATCH_OTEL_ENABLED a verify task yields Celery, httpx and SQL
spans, none holding an ID number; without it nothing is instrumented."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from idbatch.pii import ID_NUMBER_RE
from tests.conftest import Env
from tests.durability.conftest import Stack
from workers.tasks import verify
from workers.tracing import setup_tracing, stop_tracing

pytestmark = pytest.mark.integration


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    stop_tracing()


def test_tracing_is_off_by_default(stack: Stack, spans: InMemorySpanExporter) -> None:
    assert setup_tracing(stack.settings, "test", exporter=spans) is False


def test_a_verify_task_is_traced_through_celery_httpx_and_sqlalchemy(
    stack: Stack, env: Env, spans: InMemorySpanExporter
) -> None:
    settings = env(otel_enabled="true")
    assert setup_tracing(settings, "test", exporter=spans)
    env()  # rebuild the engine and the httpx client: instrumented from now on
    batch = stack.submit()
    spans.clear()
    assert verify.apply(args=[stack.jobs(batch)[0].id]).state == "SUCCESS"
    finished = spans.get_finished_spans()
    names = [s.name for s in finished]
    assert any("idbatch.verify" in n for n in names), names
    assert any(s.attributes and s.attributes.get("db.system") == "postgresql" for s in finished), names
    assert any(n.startswith("POST") for n in names), names
    dumped = json.dumps([dict(s.attributes or {}) for s in finished], default=str)
    assert not ID_NUMBER_RE.search(dumped)
