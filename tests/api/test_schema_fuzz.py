"""Property-based fuzzing of the OpenAPI schema (schemathesis) over real HTTP on Postgres.

Every operation gets generated requests (valid and invalid, with a valid key so they reach
the handlers); no answer may be a 5xx, and every answer must match the schema: a
documented status code, its content type, its body schema. Examples are bounded so the
file runs in a minute or two.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from db.migrate import upgrade
from idbatch.servers import BackgroundServer
from producers.api.app import create_app
from tests.api.conftest import make_tenant
from tests.conftest import Env, fresh_database

pytestmark = pytest.mark.integration


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else str(value).encode()


def test_no_5xx_and_no_schema_violation(env: Env) -> None:
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    seen: Counter[tuple[str, int]] = Counter()
    with fresh_database("idbatch_fz") as url:
        s = env(
            database_url=url,
            api_quota_per_s="0",
            api_wait_max_s="0.2",
            api_max_cards="50",
            api_max_body_bytes="262144",
        )
        upgrade(s.database_url)
        tenant = make_tenant("fuzz", scopes=("submit", "read", "reveal"))
        headers = {"Authorization": f"Bearer {tenant.key}"}
        with BackgroundServer(create_app(s)) as server:
            schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
            operations = [result.ok() for result in schema.get_all_operations()]
            assert len(operations) == 8  # every route of the API
            for operation in operations:

                @given(case=operation.as_strategy())
                @settings(
                    max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
                )
                def fuzz(case: Any) -> None:
                    response = case.call_and_validate(headers=headers, checks=checks)
                    seen[(case.operation.label, response.status_code)] += 1

                fuzz()
    # the fuzzing reached the handlers, not only the validation layer
    print(dict(seen))
    assert sum(seen.values()) >= 8 * 20
    assert any(code in (200, 202) for (_, code) in seen)
