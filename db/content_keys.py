"""Before a call, in one statement: hold the content key, renew the lease, find a reusable answer.

``workers.prepare`` asked two questions of the database before every call: is a paid
answer for this card (same content key) reusable, and, if not, may this job hold the key
(a partial unique index lets one ``running`` job hold it). That was a SELECT and an
UPDATE. Here the UPDATE that holds the key and renews the lease (``jobs.hold_content_key``)
returns the reusable answer's id from a scalar subquery: one statement less per job
(issue 17). Postgres only: SQLAlchemy renders ``RETURNING`` for SQLite with its columns
unqualified, which inside a subquery over a second ``job`` would name the wrong table,
so the embedded mode keeps the SELECT and the UPDATE (``in_one_statement``).

What the order change means: the key is now held before the reuse question is answered.
If a reusable answer exists the job takes the reuse path exactly as before (its release
keeps the key). If another running job holds the same key, the UPDATE raises
``IntegrityError`` as before and the job waits for that answer (``prepare``'s handler).
Before this change a job that found a reusable answer never touched the key, so two
copies of an already-answered card could both reuse at once; now the second waits one
sweep interval, then reuses. Nothing is paid twice either way.
"""

from __future__ import annotations

import datetime as dt
from functools import cache

from sqlalchemy import Update, bindparam, update
from sqlalchemy.orm import aliased

from db import prebuilt
from db.jobs import Claim, Tx, core, reusable_answer
from db.models import Job, utcnow
from idbatch.domain import JobStatus


@cache
def _hold_and_find_stmt(same_batch: bool) -> Update:
    # the same question as ``jobs.reusable_answer``'s SELECT, over a second ``job``; its
    # batch parameter is named apart from the UPDATE's own ``batch_id`` column
    found = reusable_answer(aliased(Job, name="other_job"), same_batch, "r_batch_id")
    until = bindparam("lease_until", type_=Job.lease_until.type)
    return (
        update(Job)
        .where(
            Job.id == bindparam("job_id"),
            Job.status == JobStatus.RUNNING,
            Job.lease_owner == bindparam("owner"),
        )
        .values(content_key=bindparam("key"), lease_until=until)
        .returning(found.scalar_subquery().label("reusable_id"))
    )


def in_one_statement(session: Tx) -> bool:
    """Whether ``hold_and_find`` may be used on this database (Postgres)."""
    return core(session).dialect.name == "postgresql"


def hold_and_find(
    session: Tx, claimed: Claim, owner: str, key: str, lease_s: float, since: dt.datetime
) -> tuple[bool, int | None]:
    """(still ours, the id of a reusable ``Result`` answered since ``since`` or None).

    Not ours (False): our lease expired and another worker took the job; do not call.
    Raises IntegrityError when another running job holds the same key.
    """
    params = {
        "job_id": claimed.job_id,
        "owner": owner,
        "key": key,
        "lease_until": utcnow() + dt.timedelta(seconds=lease_s),
        "since": since,
        "r_batch_id": claimed.batch_id,
    }
    row = prebuilt.execute(core(session), _hold_and_find_stmt(claimed.rerun), params).one_or_none()
    if row is None:
        return False, None
    return True, row.reusable_id
