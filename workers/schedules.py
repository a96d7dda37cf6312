"""The beat hook of issue 15: fire every rerun schedule slot that is due, exactly once.

Beat sends ``idbatch.fire_schedules`` every ``schedule_check_s``; whichever worker runs
it asks Postgres for due slots and fires each through ``db.schedules.fire_slot``. With
two beats (or two workers running the task at once) both find the slot due and both
try to insert its row; the unique (schedule, slot) row lets one win, the other does
nothing. The rerun's jobs are published after the commit, one fan-out message per
5,000 ids, as ingest does.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from sqlalchemy.orm import Session

from db import schedules
from db.models import utcnow
from db.session import session_scope
from dispatch.publish import Publisher, after_commit, publish_fanout
from idbatch.logging import get_logger
from idbatch.reruns import today
from idbatch.settings import Settings

log = get_logger(__name__)
CHUNK = 5000


def chunked(publish: Publisher) -> Publisher:
    """``publish`` called once per ``CHUNK`` ids (a fan-out message each)."""

    def send(ids: list[int]) -> None:
        for start in range(0, len(ids), CHUNK):
            publish(ids[start : start + CHUNK])

    return send


def fired_by() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fire_due(settings: Settings, publish: Publisher = publish_fanout) -> list[dict[str, Any]]:
    """Fire every due slot this process wins; what each firing did."""
    with session_scope() as session:
        found = schedules.due(session, utcnow())
    send = chunked(publish)

    def on_queued(session: Session, ids: list[int]) -> None:
        after_commit(session, send, ids)

    fired = []
    for due in found:
        done = schedules.fire_slot(due, today(settings), fired_by(), on_queued)
        if done is not None:
            log.info("schedule fired", schedule=due.name, slot=due.slot.isoformat(), **done)
            fired.append(done)
    return fired
