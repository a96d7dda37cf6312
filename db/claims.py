"""Claiming a group of jobs in one transaction, and handing back the ones not started.

A ``verify_many`` message carries up to ``IDBATCH_VERIFY_GROUP`` job ids that one worker
thread runs one after another (``workers.tasks.run_group``). Claiming them one
transaction each cost a tenth of a job's CPU (issue 17: BEGIN, one UPDATE ... RETURNING,
COMMIT, a pool checkout and SQLAlchemy's execution around each); one UPDATE over the
group's ids costs about what one claim did.

What a group claim changes, and why each guarantee still holds:

- **Leases.** Every job of the group is ``running`` under this worker's lease from the
  start of the group, and ``jobs.hold_content_key`` renews the lease right before each
  call, so a call is covered by a full lease however long the jobs before it took. A
  job whose lease ran out while it waited may be claimed by another worker (the
  sweeper republishes expired leases); then the renewal matches no row (the owner
  changed) and this worker does not call: at most one worker ever calls a job.
- **Shutdown.** The jobs not started are handed back (``hand_back``): ``queued``, lease
  dropped, the attempt the claim counted given back, in one UPDATE, then republished.
- **A killed worker** (SIGKILL, OOM) leaves its group's unstarted jobs ``running`` until
  their lease expires (``IDBATCH_LEASE_S``, default 300 s) instead of ``queued`` until
  the sweeper's ``requeue_after_s`` (120 s), and each spent one attempt of its budget
  (``max_attempts``) without a call, as the job it was running always did. Nothing was
  sent for them: no write-ahead row exists, so nothing is marked in doubt.
"""

from __future__ import annotations

import datetime as dt
from functools import cache

from sqlalchemy import Update, bindparam, update

from db import prebuilt
from db.jobs import Claim, Tx, claim_stmt, claimed_row, core
from db.models import Job, utcnow
from idbatch.domain import JobStatus


def claim_many(session: Tx, job_ids: list[int], owner: str, lease_s: int) -> dict[int, Claim]:
    """Take every claimable job of ``job_ids`` (batch active, due, not someone else's)."""
    if not job_ids:
        return {}
    now = utcnow()
    params = {
        "now": now,
        "job_ids": list(job_ids),
        "owner": owner,
        "lease_until": now + dt.timedelta(seconds=lease_s),
    }
    rows = prebuilt.execute(core(session), claim_stmt(many=True), params).all()
    return {row.id: claimed_row(session, row.id, row) for row in rows}


@cache
def _hand_back_stmt() -> Update:
    return (
        update(Job)
        .where(
            Job.id.in_(bindparam("job_ids", expanding=True)),
            Job.status == JobStatus.RUNNING,
            Job.lease_owner == bindparam("owner"),
            # not started: the content key is set right before a call (jobs.hold_content_key)
            Job.content_key.is_(None),
        )
        .values(
            status=JobStatus.QUEUED,
            lease_owner=None,
            lease_until=None,
            attempt_count=Job.attempt_count - 1,
            updated_at=bindparam("now", type_=Job.updated_at.type),
            enqueued_at=bindparam("now", type_=Job.updated_at.type),
        )
        .returning(Job.id)
    )


def hand_back(session: Tx, claims: list[Claim], owner: str) -> set[int]:
    """Put claimed jobs that were never started back to ``queued``, attempt unspent; their ids."""
    if not claims:
        return set()
    params = {"job_ids": [c.job_id for c in claims], "owner": owner, "now": utcnow()}
    return set(prebuilt.execute(core(session), _hand_back_stmt(), params).scalars())
