"""A database outage after the provider answered must not lose the (paid) answer."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from db.models import Attempt, Result
from db.session import engine, session_scope
from idbatch.domain import JobStatus
from tests.durability.conftest import Stack
from workers import durable, verify
from workers.runtime import runtime

pytestmark = pytest.mark.integration


def test_lost_connection_while_recording_the_answer_is_retried(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable.time, "sleep", lambda s: None)  # backoff, not the behaviour under test
    job_id = stack.jobs(stack.submit())[0].id
    failures = {"left": 3}

    def fail_result_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO result") and failures["left"]:
            failures["left"] -= 1
            raise OperationalError(statement, {}, Exception("server closed the connection unexpectedly"))

    event.listen(engine(), "before_cursor_execute", fail_result_insert)
    try:
        outcome = verify.process_job(job_id, runtime())
    finally:
        event.remove(engine(), "before_cursor_execute", fail_result_insert)

    assert failures["left"] == 0
    assert outcome.status in (JobStatus.PASSED, JobStatus.NEGATIVE)
    assert stack.stats()["billable"] == 1  # answered once, recorded after three failures
    with session_scope() as session:
        assert session.scalar(select(func.count()).where(Result.job_id == job_id)) == 1
        assert session.scalar(select(func.count()).where(Attempt.job_id == job_id)) == 1
