"""``idbatch.events.sweep``: the beat resolves upload sides whose pairing window ended (issue 19).

A listener sweeps from its own loop, but a side can outlive every listener (the last
back never came, the listener was stopped or scaled to zero): then nothing would ever
resolve its card. Beat sends this task every ``sweep_interval_s`` on the sweep queue;
any worker runs it (``workers.celery_app`` lists this module in ``include``). It is
``pairing.sweep_all``: expiry is judged on the ledger's timestamps in Postgres, a card
is locked before its sides are read, so it is harmless beside a listener's sweep or a
second beat. Each expired side ends in a job with the precise reason (a lone front is
one-sided or rejected "no back image within the N s pairing window ...", a lone back is
rejected "back image without a front ..." naming the job its front went to); nothing is
dropped.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import shared_task

from db.models import utcnow
from dispatch.app import EVENTS_SWEEP
from dispatch.publish import Publisher, on
from idbatch.logging import get_logger
from idbatch.settings import get_settings
from producers.pairing import Outcome, sweep_all

log = get_logger(__name__)


def expire_sides(publish: Publisher, now: dt.datetime | None = None) -> Outcome:
    """One pass over the whole ledger: every card whose window ended becomes its job."""
    out = sweep_all(publish, now or utcnow(), get_settings().events_pair_window_s)
    if out.jobs or out.rejected:
        log.info("expired upload sides resolved", jobs=out.jobs, rejected=out.rejected)
    return out


@shared_task(bind=True, name=EVENTS_SWEEP, acks_late=False, ignore_result=True)  # type: ignore[untyped-decorator]
def events_sweep(self: Any) -> int:
    """Beat task: resolve the cards whose pairing window ended; the jobs made (published on
    the app that runs the task)."""
    out = expire_sides(on(self.app))
    return out.jobs + out.rejected
