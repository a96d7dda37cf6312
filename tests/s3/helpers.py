"""Running a batch's jobs in this process with the production task body."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db.models import Job
from db.reports import Report, build_report
from db.session import session_scope
from idbatch.domain import TERMINAL_STATUSES, JobStatus
from workers.runtime import runtime
from workers.verify import process_job


def drain(batch_id: int, timeout_s: float = 120.0) -> None:
    """process_job every open job of the batch until all are terminal (retries included)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with session_scope() as session:
            open_ids = list(
                session.scalars(
                    select(Job.id).where(Job.batch_id == batch_id, Job.status.not_in(TERMINAL_STATUSES))
                )
            )
        if not open_ids:
            return
        for job_id in open_ids:
            process_job(job_id, runtime())
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} still has open jobs")


def report(batch_id: int) -> Report:
    with session_scope() as session:
        return build_report(session, batch_id, limit=100000)


def upload_dir(s3: Any, bucket: str, root: Path, prefix: str) -> int:
    n = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            s3.put_object(
                Bucket=bucket, Key=prefix + path.relative_to(root).as_posix(), Body=path.read_bytes()
            )
            n += 1
    return n


def statuses(batch_id: int) -> dict[str, JobStatus]:
    with session_scope() as session:
        rows = session.execute(select(Job.external_ref, Job.status).where(Job.batch_id == batch_id)).all()
    return {str(ref): JobStatus(status) for ref, status in rows}
