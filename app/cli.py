"""The ``idbatch`` command. It only parses arguments and calls functions tests can call."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from app import cli_admin, cli_api, cli_events, cli_ops, cli_rerun
from app.cli_common import (
    LogLevel,
    ProviderName,
    app,
    console,
    embedded,
    parse_config,
    reader_went_away,
    require_batch,
    require_free_port,
    require_schema,
)
from idbatch.domain import BatchKind
from idbatch.providers import KNOWN_PROVIDERS, ConfigError
from idbatch.settings import get_settings
from idbatch.storage.base import StorageError

# The cli_* modules are imported to register their commands.
__all__ = ["app", "cli_admin", "cli_api", "cli_events", "cli_ops", "cli_rerun", "main"]


@app.command()
def demo(
    count: Annotated[int, typer.Option(help="synthetic cards in the sample")] = 200,
    seed: Annotated[int | None, typer.Option(help="seed for a reproducible sample")] = None,
    concurrency: Annotated[int, typer.Option(help="in-process worker threads")] = 16,
    provider: Annotated[ProviderName, typer.Option(help="provider (all simulated)")] = "acedata",
) -> None:
    """Run a real batch of synthetic cards end to end on the embedded default."""
    from app.demo import run_demo

    if provider not in KNOWN_PROVIDERS:
        raise typer.BadParameter(f"unknown provider {provider!r}; choose from {', '.join(KNOWN_PROVIDERS)}")
    result = run_demo(console, count=count, seed=seed, concurrency=concurrency, provider=provider)
    if not (result.report.accounted and result.report.done and result.report.jobs == count):
        console.print("[red]not every row reached a terminal state[/red]")
        raise typer.Exit(1)


@app.command(
    epilog=(
        "Examples:\n\n  idbatch submit cards/manifest.csv\n\n"
        "  idbatch submit s3://kyc-bucket/2024-06/ --provider tencent_ocr\n\n"
        "  idbatch submit manifest.csv --force   (a rerun: call the provider again)\n\n"
        "Settings: IDBATCH_DATABASE_URL, IDBATCH_BROKER_URL, IDBATCH_PROVIDER, IDBATCH_RATE_LIMITS."
    )
)
def submit(
    manifest: Annotated[
        str, typer.Argument(help="CSV manifest: a path, s3://bucket/manifest.csv or an s3://bucket/prefix/")
    ],
    provider: Annotated[
        ProviderName | None, typer.Option(help="provider (default: IDBATCH_PROVIDER)")
    ] = None,
    config: Annotated[str | None, typer.Option(help="provider config as JSON")] = None,
    kind: Annotated[BatchKind, typer.Option(help="batch kind")] = BatchKind.BACKFILL,
    encoding: Annotated[str | None, typer.Option(help="force an encoding (default: per line)")] = None,
    force: Annotated[
        bool, typer.Option(help="call the provider again even for cards already answered (a rerun)")
    ] = False,
    resume: Annotated[
        int | None, typer.Option(help="continue the interrupted ingest of this batch from the same input")
    ] = None,
) -> None:
    """Create a batch from a manifest and enqueue its jobs.

    A card already verified (same image bytes, provider, config and claims) reuses its
    paid answer instead of being billed again, unless `--force` (= `--kind rerun`).

    With the in-memory broker (embedded mode) the batch is processed in this process
    and the report printed; otherwise the jobs go to the broker for `idbatch worker`.
    On a terminal a progress bar shows the ingest (rows, rows/s, ETA for a local file).
    """
    from idbatch.settings import Settings
    from producers.csv_manifest import ManifestError
    from producers.s3 import submit_target
    from producers.submit import IngestInterrupted, SubmitResult

    settings = get_settings()
    kind = BatchKind.RERUN if force else kind
    embedded = settings.broker_url.startswith("memory://")

    def run(settings: Settings) -> SubmitResult:
        with cli_ops.ingest_progress(console):
            return submit_target(
                manifest,
                settings=settings,
                provider=provider,
                config=parse_config(config),
                kind=kind,
                encoding=encoding,
                resume=resume,
            )

    try:
        if embedded:
            from app.embedded import embedded_stack, image_gateway, wait_for_batch
            from app.render import render_report
            from db.reports import build_report
            from db.session import session_scope

            folder = Path(manifest).resolve().parent if "://" not in manifest else settings.data_dir
            with image_gateway(settings, folder) as gw:
                from app.embedded import apply_env

                settings = apply_env({"IDBATCH_GATEWAY_URL": gw.url})
                with embedded_stack(settings):
                    result = run(settings)
                    wait_for_batch(result.batch_id, console)
            with session_scope() as session:
                render_report(build_report(session, result.batch_id), console)
            return
        require_schema(settings.database_url)
        result = run(settings)
    except ManifestError as exc:
        console.print(f"[red]manifest refused:[/red] {exc}")
        raise typer.Exit(2) from exc
    except ConfigError as exc:
        console.print(f"[red]config refused:[/red] {exc}")
        raise typer.Exit(2) from exc
    except IngestInterrupted as exc:
        console.print(
            f"[red]{exc}[/red]; the rows committed so far are kept. "
            f"Continue with: idbatch submit {manifest} --resume {exc.batch_id}"
        )
        raise typer.Exit(1) from exc
    except ValueError as exc:  # --resume of a batch that does not exist or is complete
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    except StorageError as exc:  # a bucket or prefix that does not exist, no credentials ...
        console.print(f"[red]cannot read {manifest}:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(
        f"batch {result.batch_id}: {result.rows} rows, {result.queued} queued, "
        f"{result.rejected} rejected at ingest"
        + ("; the manifest has no data rows, the batch is finished" if result.rows == 0 else "")
    )


@app.command(
    epilog=(
        "Examples:\n\n  idbatch status 7\n\n"
        "  idbatch status 7 --watch --timeout 3600 --max-failed-percent 0.5"
        "\n\nExit codes with --watch: 0 finished with at most --max-failed-percent failed jobs; "
        "1 timed out or more failed; 2 no such batch."
    )
)
def status(
    batch: Annotated[int, typer.Argument(help="batch id (see `idbatch batches`)")],
    watch: Annotated[
        bool, typer.Option(help="follow with a progress bar (rate, ETA) until every row is terminal")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="with --watch: give up after this many seconds (exit 1)")
    ] = None,
    max_failed_percent: Annotated[
        float,
        typer.Option(
            min=0,
            max=100,
            help="with --watch: exit 1 when more than this % of jobs failed (processing failed; "
            "negative verdicts and rejected rows do not count)",
        ),
    ] = 0.0,
) -> None:
    """Live counts for a batch, or follow it to the end with --watch."""
    from db.reports import status_counts
    from db.session import session_scope

    if watch:
        cli_ops.watch(batch, timeout, max_failed_percent)
        return
    require_batch(batch)
    with session_scope() as session:
        counts = status_counts(session, batch)
        from db.accounts import accounts as circuit_accounts

        stopped = circuit_accounts(session, only_stopped=True)  # calls stopped until resumed
    out = {"batch": batch, "counts": counts, "jobs": sum(counts.values()), "stopped_accounts": stopped}
    console.print_json(json.dumps(out))


@app.command(
    epilog="Examples:\n\n  idbatch report 7\n\n  idbatch report 7 --json > report.json\n\n"
    "  idbatch report 7 --html report-7.html   (one self-contained file, masked)"
)
def report(
    batch: Annotated[int, typer.Argument(help="batch id")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False, help="write a self-contained HTML report with charts here (no network needed)"
        ),
    ] = None,
    reveal: Annotated[
        bool,
        typer.Option(help="show unmasked PII; writes an audit row (actor: IDBATCH_ACTOR or the OS user)"),
    ] = False,
) -> None:
    """Reconciliation report: counts by status, warnings, checks, rejected rows."""
    from app.render import render_report
    from db.audit import record_reveal
    from db.reports import build_report
    from db.session import session_scope

    require_batch(batch)
    with session_scope() as session:
        rep = build_report(session, batch, reveal=reveal)
        if reveal:
            record_reveal(session, "report --reveal", batch)  # committed before anything is shown
    if html is not None:
        from app.report_html import provider_quota, render_html
        from db.ops import report_series

        with session_scope() as session:
            series = report_series(session, batch)
        page = render_html(rep, series, quota=provider_quota(get_settings(), rep.provider), revealed=reveal)
        html.write_text(page, encoding="utf-8")
        console.print(f"wrote {html} ({len(page) // 1024 + 1} KiB)")
    elif as_json:
        sys.stdout.write(json.dumps(rep.as_dict(), ensure_ascii=False, default=str) + "\n")
    else:
        render_report(rep, console)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None, typer.Option(help="threads (default IDBATCH_WORKER_CONCURRENCY)")
    ] = None,
    loglevel: Annotated[LogLevel, typer.Option(help="log level")] = "INFO",
) -> None:
    """Start a Celery worker process (production mode).

    Further options go to `celery worker` as they are (e.g. `-E`, `--hostname=w1@%h`).
    Serves Prometheus /metrics on IDBATCH_METRICS_PORT (0: none); IDBATCH_LOG_JSON=true
    makes every line of its output JSON.
    """
    settings = get_settings()
    if settings.broker_url.startswith("memory://"):
        console.print(
            "[red]the in-memory broker lives inside one process;[/red] set "
            "IDBATCH_BROKER_URL=redis://… for separate workers, or use `idbatch submit` "
            "in embedded mode"
        )
        raise typer.Exit(2)
    if "IDBATCH_DB_PRE_PING" not in os.environ:
        # Worker transactions retry dead connections themselves (workers.durable.durably):
        # skip the per-checkout ping round trip (see db.session.make_engine).
        from app.env import apply_env  # not app.embedded: its imports cost every worker start

        settings = apply_env({"IDBATCH_DB_PRE_PING": "false"})
    from workers.celery_app import app as celery_app

    # Celery prints its banner straight to the real stdout, past any logging: with JSON
    # logs it would be the one non-JSON block of the output (the same facts are logged).
    quiet = ["--quiet"] if settings.log_json else []
    celery_app.worker_main(
        [
            *quiet,  # a global option of `celery`: before the sub-command
            "worker",
            f"--concurrency={concurrency or settings.worker_concurrency}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            *ctx.args,
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

    from simulator.app import DEFAULT_ACEDATA_TOKENS, create_app
    from simulator.cards import load_registry
    from simulator.state import SimState

    require_free_port(host, port)
    quotas = {k: float(v) for k, v in (q.split("=", 1) for q in quota or [])}
    state = SimState(registry=load_registry(registry) if registry else {}, quotas=quotas)
    state.faults.update(dict(f.split("=", 1) for f in fault or []))
    # Also the deployment's own AceData token: the compose stack runs in production mode,
    # which refuses the simulator's well-known token, and calls this simulator with its own.
    tokens = set(DEFAULT_ACEDATA_TOKENS) | {get_settings().acedata_token.get_secret_value()}
    uvicorn.run(
        create_app(state, acedata_tokens=tokens), host=host, port=port, log_level="warning", access_log=False
    )


@app.command()
def gateway(
    port: Annotated[int, typer.Option(help="TCP port")] = 8701,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
) -> None:
    """Serve local images to URL-only providers under signed, expiring URLs."""
    import uvicorn

    from idbatch.gateway import create_app

    settings = get_settings()
    if not settings.image_roots:
        console.print("[red]set IDBATCH_IMAGE_ROOTS[/red] (JSON list): the gateway serves only files there")
        raise typer.Exit(2)
    require_free_port(host, port)
    secret = settings.gateway_secret.get_secret_value().encode()
    app_ = create_app(secret, settings.image_roots)
    uvicorn.run(app_, host=host, port=port, log_level="warning", access_log=False)


@app.command()
def cards(
    out: Annotated[Path, typer.Argument(help="output folder")],
    count: Annotated[int, typer.Option(help="rows")] = 200,
    seed: Annotated[int | None, typer.Option(help="seed")] = None,
    defects: Annotated[bool, typer.Option(help="mix in defective rows")] = True,
) -> None:
    """Generate synthetic cards, a registry and a manifest."""
    from simulator.samples import generate_sample

    rows = generate_sample(out, count, seed=seed, defects=defects)
    console.print(f"wrote {len(rows)} rows to {out / 'manifest.csv'}")


@app.command()
def beat(
    loglevel: Annotated[LogLevel, typer.Option(help="log level")] = "INFO",
) -> None:
    """Run Celery beat: sends the sweep task (due retries, lost messages, dead workers) and
    the rerun-schedules task (each due schedule slot fires once, whatever the beats).

    Run one per deployment; a second is harmless (the sweep locks the rows it publishes).
    Serves /metrics on IDBATCH_METRICS_PORT, with the backlog of open jobs.
    """
    if embedded():
        console.print("[red]beat needs a real broker;[/red] the embedded mode sweeps in-process")
        raise typer.Exit(2)
    from workers.celery_app import app as celery_app

    celery_app.start(["beat", f"--loglevel={loglevel}"])


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # help or output cut short outside a command's own run
        sys.exit(reader_went_away())


if __name__ == "__main__":
    main()
