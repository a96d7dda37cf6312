"""The ``idbatch`` command. It only parses arguments and calls functions tests can call."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from idbatch.domain import BatchKind
from idbatch.logging import configure
from idbatch.settings import get_settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Verify Chinese resident ID cards in bulk through provider APIs.",
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()


@app.callback()
def _setup() -> None:
    settings = get_settings()
    configure(settings.log_level, settings.log_json)


def _parse_config(config: str | None) -> dict[str, Any]:
    if not config:
        return {}
    try:
        value = json.loads(config)
    except ValueError as exc:
        raise typer.BadParameter(f"--config must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("--config must be a JSON object")
    return value


@app.command()
def demo(
    count: Annotated[int, typer.Option(help="synthetic cards in the sample")] = 200,
    seed: Annotated[int | None, typer.Option(help="seed for a reproducible sample")] = None,
    concurrency: Annotated[int, typer.Option(help="in-process worker threads")] = 16,
) -> None:
    """Run a real batch of synthetic cards end to end on the embedded default."""
    from idbatch.demo import run_demo

    result = run_demo(console, count=count, seed=seed, concurrency=concurrency)
    if not (result.report.accounted and result.report.done and result.report.jobs == count):
        console.print("[red]not every row reached a terminal state[/red]")
        raise typer.Exit(1)


@app.command()
def submit(
    manifest: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV manifest")],
    provider: Annotated[str | None, typer.Option(help="provider (default: IDBATCH_PROVIDER)")] = None,
    config: Annotated[str | None, typer.Option(help="provider config as JSON")] = None,
    kind: Annotated[BatchKind, typer.Option(help="batch kind")] = BatchKind.BACKFILL,
    encoding: Annotated[str | None, typer.Option(help="force an encoding (default: per line)")] = None,
) -> None:
    """Create a batch from a manifest and enqueue its jobs.

    With the in-memory broker (embedded mode) the batch is processed in this process
    and the report printed; otherwise the jobs go to the broker for ``idbatch worker``.
    """
    from db.migrate import upgrade
    from producers.csv_manifest import ManifestError
    from producers.submit import submit_path

    settings = get_settings()
    embedded = settings.broker_url.startswith("memory://")
    try:
        if embedded:
            from db.session import session_scope
            from idbatch.embedded import embedded_stack, image_gateway, wait_for_batch
            from idbatch.render import render_report
            from idbatch.report import build_report

            with image_gateway(settings) as gw:
                from idbatch.embedded import apply_env

                settings = apply_env({"IDBATCH_GATEWAY_URL": gw.url})
                with embedded_stack(settings):
                    result = submit_path(
                        manifest,
                        settings=settings,
                        provider=provider,
                        config=_parse_config(config),
                        kind=kind,
                        encoding=encoding,
                    )
                    wait_for_batch(result.batch_id, console)
            with session_scope() as session:
                render_report(build_report(session, result.batch_id), console)
            return
        upgrade(settings.database_url)
        result = submit_path(
            manifest,
            settings=settings,
            provider=provider,
            config=_parse_config(config),
            kind=kind,
            encoding=encoding,
        )
    except ManifestError as exc:
        console.print(f"[red]manifest refused:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(
        f"batch {result.batch_id}: {result.rows} rows, {result.queued} queued, "
        f"{result.rejected} rejected at ingest"
    )


@app.command()
def status(
    batch: Annotated[int, typer.Argument(help="batch id")],
    watch: Annotated[bool, typer.Option(help="follow with a progress bar until done")] = False,
) -> None:
    """Live counts for a batch."""
    from db.session import session_scope
    from idbatch.report import status_counts

    if watch:
        from idbatch.embedded import wait_for_batch

        wait_for_batch(batch, console)
        return
    with session_scope() as session:
        counts = status_counts(session, batch)
    console.print_json(json.dumps({"batch": batch, "counts": counts, "jobs": sum(counts.values())}))


@app.command()
def report(
    batch: Annotated[int, typer.Argument(help="batch id")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    reveal: Annotated[bool, typer.Option(help="show unmasked PII (audited use only)")] = False,
) -> None:
    """Reconciliation report: counts by status, warnings, checks, rejected rows."""
    from db.session import session_scope
    from idbatch.render import render_report
    from idbatch.report import build_report

    with session_scope() as session:
        rep = build_report(session, batch, reveal=reveal)
    if as_json:
        sys.stdout.write(json.dumps(rep.as_dict(), ensure_ascii=False, default=str) + "\n")
    else:
        render_report(rep, console)


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="threads (default IDBATCH_WORKER_CONCURRENCY)")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
) -> None:
    """Start a Celery worker process (production mode)."""
    settings = get_settings()
    if settings.broker_url.startswith("memory://"):
        console.print(
            "[red]the in-memory broker lives inside one process;[/red] set "
            "IDBATCH_BROKER_URL=redis://… for separate workers, or use `idbatch submit` "
            "in embedded mode"
        )
        raise typer.Exit(2)
    from workers.celery_app import app as celery_app

    celery_app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency or settings.worker_concurrency}",
            f"--queues={settings.queue}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def simulator(
    port: Annotated[int, typer.Option(help="TCP port")] = 8700,
    host: Annotated[str, typer.Option(help="bind address (loopback by default)")] = "127.0.0.1",
    registry: Annotated[Path | None, typer.Option(help="registry.jsonl of enrolled identities")] = None,
    quota: Annotated[list[str] | None, typer.Option(help="PROTOCOL=RPS, repeatable")] = None,
    fault: Annotated[list[str] | None, typer.Option(help="KNOB=VALUE, repeatable (see README)")] = None,
) -> None:
    """Serve the provider simulator."""
    import uvicorn

    from idbatch.cards import load_registry
    from simulator.app import create_app
    from simulator.state import SimState

    quotas = {k: float(v) for k, v in (q.split("=", 1) for q in quota or [])}
    state = SimState(registry=load_registry(registry) if registry else {}, quotas=quotas)
    state.faults.update(dict(f.split("=", 1) for f in fault or []))
    uvicorn.run(create_app(state), host=host, port=port, log_level="warning", access_log=False)


@app.command()
def gateway(
    port: Annotated[int, typer.Option(help="TCP port")] = 8701,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
) -> None:
    """Serve local images to URL-only providers under signed, expiring URLs."""
    import uvicorn

    from idbatch.gateway import create_app

    secret = get_settings().gateway_secret.get_secret_value().encode()
    uvicorn.run(create_app(secret), host=host, port=port, log_level="warning", access_log=False)


@app.command()
def cards(
    out: Annotated[Path, typer.Argument(help="output folder")],
    count: Annotated[int, typer.Option(help="rows")] = 200,
    seed: Annotated[int | None, typer.Option(help="seed")] = None,
    defects: Annotated[bool, typer.Option(help="mix in defective rows")] = True,
) -> None:
    """Generate synthetic cards, a registry and a manifest."""
    from idbatch.cards import generate_sample

    rows = generate_sample(out, count, seed=seed, defects=defects)
    console.print(f"wrote {len(rows)} rows to {out / 'manifest.csv'}")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations (safe while old workers run; migrators serialize on a lock)."""
    from db.migrate import upgrade

    upgrade(get_settings().database_url, revision)
    console.print("database is at", revision)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
