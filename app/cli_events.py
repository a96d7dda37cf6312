"""``idbatch listen`` and ``idbatch events``: S3 upload events and their ledger (issue 19).

``idbatch events sweep`` resolves every card whose pairing window has ended, as the
listener's loop does every ``IDBATCH_EVENTS_SWEEP_S``: run it from cron (or by hand)
when no listener is up, so lone sides are never left waiting on one process.
"""

from __future__ import annotations

import json
import signal
import threading
from typing import Annotated

import typer

from app.cli_common import (
    ProviderName,
    app,
    console,
    err_console,
    parse_config,
    publisher,
    require_schema,
)
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


@app.command()
def listen(
    queue_url: Annotated[str | None, typer.Option(help="SQS queue (IDBATCH_EVENTS_QUEUE_URL)")] = None,
    provider: Annotated[
        ProviderName | None, typer.Option(help="provider (default: IDBATCH_PROVIDER)")
    ] = None,
    config: Annotated[str | None, typer.Option(help="provider config as JSON")] = None,
    until_idle: Annotated[bool, typer.Option(help="exit after the first empty poll")] = False,
) -> None:
    """Turn S3 upload events (from SQS) into jobs of a standing "events" batch."""
    from producers.events import EventListener
    from workers.metrics import serve
    from workers.tracing import setup_tracing

    settings = get_settings()
    if not (queue_url or settings.events_queue_url):
        console.print("[red]no queue:[/red] set IDBATCH_EVENTS_QUEUE_URL or pass --queue-url")
        raise typer.Exit(2)
    if settings.broker_url.startswith("memory://"):
        # Not refused: the jobs are recorded in Postgres either way, and `idbatch resume` or
        # the sweeper sends them to workers later. But nothing in this process verifies them.
        err_console.print(
            "[yellow]warning:[/yellow] IDBATCH_BROKER_URL is the in-memory broker: jobs are recorded,"
            " but no `idbatch worker` will see them until `idbatch resume` (or the sweeper) sends"
            " them; set IDBATCH_BROKER_URL=redis://…"
        )
    setup_tracing(settings, "listen")  # IDBATCH_OTEL_ENABLED (off by default), before any engine
    require_schema(settings.database_url)
    listener = EventListener(settings, queue_url=queue_url, provider=provider, config=parse_config(config))
    serve(settings, with_backlog=False)  # ingest rows/s, on IDBATCH_METRICS_PORT (0: none)
    console.print(f"listening on {listener.queue_url} → batch {listener.batch_id} (SIGTERM or Ctrl-C stops)")
    stop = threading.Event()

    def stopping(signum: int, _frame: object) -> None:
        # The first signal lets the receives in flight come back (at most one long poll,
        # IDBATCH_EVENTS_WAIT_S) and be committed and deleted; a second one stops at once
        # (what is received and not committed comes back after the visibility timeout).
        if stop.is_set():
            raise SystemExit(128 + signum)
        stop.set()
        err_console.print("stopping: committing what is in flight (again to stop at once)")

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    total = listener.run(until_idle=until_idle, stop=stop)
    console.print_json(json.dumps({**vars(total), "events_per_s": round(total.events_per_s, 1)}))
