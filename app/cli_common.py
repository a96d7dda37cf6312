"""The ``idbatch`` command's shared parts: the Typer apps, the console, argument helpers."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, Literal

import typer
import typer.core
from rich.console import Console

from idbatch.logging import configure
from idbatch.settings import get_settings


class OneLineErrors(typer.core.TyperGroup):
    """Any unexpected error of any command ends as one line and exit 1 (2 for bad settings),
    never a traceback; the traceback is logged at DEBUG (``IDBATCH_LOG_LEVEL=DEBUG``)."""

    def invoke(self, ctx: Any) -> Any:  # typer.core vendors click: its Context is private
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):  # usage errors, exits: as they are
            raise
        except BrokenPipeError:
            raise typer.Exit(reader_went_away()) from None
        except Exception as exc:  # noqa: BLE001 - the one place every other error becomes a line
            from app.cli_ops import report_error

            raise typer.Exit(report_error(exc)) from None


def reader_went_away() -> int:
    """``idbatch … | head``: the reader closed the pipe. Not an error of ours: stop quietly
    with exit 1, as rich (tables) and click (help) already end such a run, instead of
    "error: BrokenPipeError". Standard output is pointed at /dev/null first, so the
    interpreter's own flush at exit does not fail on the closed pipe again (the recipe of
    Python's ``signal`` docs)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


# The provider names as CLI choices (tests/cli checks they equal KNOWN_PROVIDERS).
ProviderName = Literal["acedata", "tencent_faceid", "tencent_ocr", "aliyun_market"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    help="Verify Chinese resident ID cards in bulk through provider APIs.",
    epilog=(
        "Exit codes: 0 ok; 1 failure (status --watch timed out or too many jobs failed, "
        "an ingest interrupted, any unexpected error, shown as one line); "
        "2 usage error or not found (a batch, a provider, a bucket, bad settings).\n\n"
        "Settings come from IDBATCH_* environment variables (README, Configuration): "
        "IDBATCH_DATABASE_URL, IDBATCH_BROKER_URL, IDBATCH_PROVIDER, IDBATCH_LOG_JSON, "
        "IDBATCH_LOG_LEVEL, IDBATCH_METRICS_PORT, ..."
    ),
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
accounts_app = typer.Typer(help="Provider accounts: circuit state, resume after a block.")
app.add_typer(accounts_app, name="accounts")
keys_app = typer.Typer(help="PII keys: rotation.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()
err_console = Console(stderr=True)  # usage errors: stdout may be the file being written


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"idbatch {version('idbatch')}")
        raise typer.Exit(0)


@app.callback()
def _setup(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    settings = get_settings()
    configure(settings.log_level, settings.log_json)


def require_batch(batch_id: int) -> None:
    """Exit 2 with one line when the batch does not exist (never a traceback)."""
    from db.models import Batch
    from db.session import session_scope

    with session_scope() as session:
        found = session.get(Batch, batch_id) is not None
    if not found:
        err_console.print(f"[red]batch {batch_id} does not exist[/red]")
        raise typer.Exit(2)


def require_free_port(host: str, port: int, option: str = "--port") -> None:
    """Exit 2 with one line when ``host:port`` cannot be bound (taken, or not an address here).

    Why: uvicorn logs the bind error and exits 3, which reads as a crash; the usual cause is
    a second copy of the same server, and the fix is another ``--port``. (A port taken
    between this check and uvicorn's bind still gets uvicorn's own exit.)
    """
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is free
        try:
            sock.bind((host, port))
        except OSError as exc:
            console.print(f"[red]cannot listen on {host}:{port}[/red]: {exc.strerror}; pass another {option}")
            raise typer.Exit(2) from None


def parse_config(config: str | None) -> dict[str, Any]:
    if not config:
        return {}
    try:
        value = json.loads(config)
    except ValueError as exc:
        raise typer.BadParameter(f"--config must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("--config must be a JSON object")
    return value


def embedded() -> bool:
    return get_settings().broker_url.startswith("memory://")


def publisher() -> Any:
    """Publish on the broker from settings; with the in-memory broker there is no worker to
    receive, so the jobs stay queued in the database for the next embedded run's sweeper."""
    from dispatch.publish import discard, publish_jobs

    return discard if embedded() else publish_jobs


def require_schema(database_url: str) -> None:
    """Production mode never migrates implicitly: a deploy runs ``idbatch db upgrade`` once."""
    from db.migrate import pending

    if pending(database_url):
        console.print("[red]the database schema is not current;[/red] run `idbatch db upgrade` first")
        raise typer.Exit(2)


def control(fn: Any, *args: Any) -> None:
    from workers.controls import BatchControlError, as_dict

    try:
        result = fn(*args)
    except BatchControlError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print_json(json.dumps(as_dict(result)))
