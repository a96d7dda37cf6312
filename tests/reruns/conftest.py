"""Fixtures for reruns: the durability stack (Postgres, simulator, gateway) and a runner
that works every job that may run, leaving the ones a budget held pending."""

from __future__ import annotations

from sqlalchemy import select

from db.models import Job
from db.session import session_scope
from idbatch.domain import TERMINAL_STATUSES, ErrorClass
from tests.durability.conftest import Stack, pg_db, stack  # noqa: F401 - fixtures reused
from tests.s3.conftest import aws, moto_url  # noqa: F401 - fixtures reused (S3 export)
from workers.runtime import runtime
from workers.sweeper import sweep
from workers.verify import process_job


def runnable(batch_id: int) -> list[int]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(Job.id).where(
                    Job.batch_id == batch_id,
                    Job.status.not_in(list(TERMINAL_STATUSES)),
                    (Job.error_class.is_(None)) | (Job.error_class != ErrorClass.BUDGET),
                )
            )
        )


def work(on: Stack, batch_id: int, rounds: int = 100) -> None:
    """Run the batch's runnable jobs as plain calls until none is left."""
    for _ in range(rounds):
        ids = runnable(batch_id)
        if not ids:
            return
        for job_id in ids:
            process_job(job_id, runtime())
        sweep(on.settings, on.published.extend, queue_depth=lambda: 0)
    raise AssertionError("batch did not finish")


def backfill_and_rerun(on: Stack, budget: int | None = None) -> tuple[int, int]:
    """A backfill of the stack's manifest, worked to the end, then a rerun of it under
    ``budget`` (None: every card), worked too: the parent and child ids."""
    from idbatch.reruns import RerunPolicy
    from producers.rerun import rerun

    parent = on.submit()
    work(on, parent)
    child = rerun(on.settings, parent, RerunPolicy(budget=budget), publish=on.published.extend).batch_id
    assert child is not None
    work(on, child)
    return parent, child
