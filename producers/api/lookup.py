"""``GET /v1/submissions/{key}``: the answer a submission got, found by its idempotency key.

The Celery entry has no result backend, so a caller that sent ``idbatch.submit`` without
a callback finds its job id here (``source=celery``); an HTTP caller whose answer was lost
can look it up too. Keys are per tenant: another tenant's key is simply not found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Query, Request
from pydantic import BaseModel

from db.tenants import stored_answer
from producers.api.http import HTTPProblem, problem_responses


class StoredAnswer(BaseModel):
    key: str
    status: int
    response: dict[str, Any]


def add_lookup(app: FastAPI, auth: Callable[[Request, str], Any]) -> None:
    @app.get(
        "/v1/submissions/{key}", response_model=StoredAnswer, responses=problem_responses(401, 403, 404, 429)
    )
    def get_submission(
        request: Request,
        key: Annotated[str, Path(min_length=1, max_length=255)],
        source: Annotated[
            Literal["http", "celery"], Query(description="which entry the key was used on")
        ] = "http",
    ) -> Any:
        principal = auth(request, "read")
        stored_key = f"celery:{key}" if source == "celery" else key
        found = stored_answer(principal.tenant_id, stored_key)
        if found is None:
            raise HTTPProblem(404, "Not found", "no answer stored under this key")
        return {"key": key, "status": found[0], "response": found[1]}
