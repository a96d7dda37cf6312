"""``idbatch events``: the upload-event ledger outside the listener (issue 19).

``idbatch events sweep`` resolves every card whose pairing window has ended, as the
listener's loop does every ``IDBATCH_EVENTS_SWEEP_S``: run it from cron (or by hand)
when no listener is up, so lone sides are never left waiting on one process.
"""

from __future__ import annotations

import json

import typer

from app.cli_common import app, console, publisher, require_schema
from idbatch.settings import get_settings

events_app = typer.Typer(help="S3 upload events: pending card sides (see `idbatch listen`)")
app.add_typer(events_app, name="events")


@events_app.command("sweep")
def sweep() -> None:
    """Resolve the cards whose pairing window has ended: one-sided, or rejected naming the missing side."""
    from db.models import utcnow
    from producers.pairing import sweep_expired

    settings = get_settings()
    require_schema(settings.database_url)
    total = {"jobs": 0, "rejected": 0}
    while True:
        out = sweep_expired(publisher(), utcnow(), settings.events_pair_window_s)
        total["jobs"] += out.jobs
        total["rejected"] += out.rejected
        if out.jobs + out.rejected == 0:
            break
    console.print_json(json.dumps(total))


@events_app.command("pending")
def pending() -> None:
    """How many card sides wait for their partner, and since when (no PII: counts only)."""
    from db.events import pending_summary
    from db.session import session_scope

    settings = get_settings()
    require_schema(settings.database_url)
    with session_scope() as session:
        console.print_json(json.dumps(pending_summary(session)))
