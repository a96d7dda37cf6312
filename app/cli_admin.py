"""``idbatch`` commands that operate on batches, accounts and the database."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app.cli_common import accounts_app, app, console, control, db_app, err_console, keys_app, publisher
from idbatch.settings import get_settings


@accounts_app.callback(invoke_without_command=True)
def accounts_list(ctx: typer.Context) -> None:
    """List provider accounts with a recorded circuit (closed / open / half_open)."""
    if ctx.invoked_subcommand is not None:
        return
    from db.accounts import accounts
    from db.session import session_scope

    with session_scope() as session:
        console.print_json(json.dumps(accounts(session)))


@accounts_app.command("resume")
def accounts_resume(
    provider: Annotated[str, typer.Argument(help="provider name, e.g. acedata")],
    account: Annotated[str | None, typer.Argument(help="account (default: all of the provider's)")] = None,
) -> None:
    """Close an open circuit: workers call the account again within a few seconds."""
    from db.accounts import resume
    from db.session import session_scope
    from idbatch.providers import KNOWN_PROVIDERS

    if provider not in KNOWN_PROVIDERS:
        console.print(f"[red]unknown provider {provider!r}[/red]; one of {', '.join(KNOWN_PROVIDERS)}")
        raise typer.Exit(2)
    from idbatch.providers import accounts_of

    with session_scope() as session:
        n = resume(session, provider, account)
    known = [spec.name for spec in accounts_of(get_settings(), provider)]
    if account is not None and n == 0 and account not in known:
        # a misspelt name resumed nothing: say so (an account no longer configured but
        # with a stopped circuit on record is still resumed above)
        err_console.print(f"{provider} has no account {account!r}; its accounts: {', '.join(known)}")
        raise typer.Exit(2)
    console.print(f"resumed {n} account(s) of {provider}")


@app.command()
def pause(batch: Annotated[int, typer.Argument(help="batch id")]) -> None:
    """Stop starting new calls for a batch; calls in flight finish and are recorded."""
    from workers.controls import pause as pause_batch

    control(pause_batch, batch)


@app.command()
def resume(
    batch: Annotated[int | None, typer.Argument(help="batch id (default: sweep every active batch)")] = None,
) -> None:
    """Resume a paused batch, or (no BATCH) re-publish lost and due jobs of all batches now."""
    settings = get_settings()
    if batch is None:
        from workers.sweeper import sweep

        result = sweep(settings, publisher(), queue_depth=lambda: 0)
        console.print_json(json.dumps({"published": result.published, **vars(result)}))
        return
    from workers.controls import resume as resume_batch

    control(resume_batch, batch, settings, publisher())


@app.command()
def cancel(batch: Annotated[int, typer.Argument(help="batch id")]) -> None:
    """Cancel a batch: open jobs become cancelled; calls in flight finish and are recorded."""
    from workers.controls import cancel as cancel_batch

    control(cancel_batch, batch)


@app.command("retry-failed")
def retry_failed(batch: Annotated[int, typer.Argument(help="batch id")]) -> None:
    """Run the batch's failed jobs again (processing failed; negative verdicts are kept)."""
    from app.embedded import processing, source_folder
    from workers.controls import retry_failed as retry_failed_jobs

    settings = get_settings()
    with processing(settings, console, *source_folder(batch)) as (publish, follow):
        control(retry_failed_jobs, batch, publish)
        follow(batch)  # embedded mode: the jobs run in this process


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations (safe while old workers run; migrators serialize on a lock)."""
    from db.migrate import upgrade

    upgrade(get_settings().database_url, revision)
    console.print("database is at", revision)


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="target revision (default: one step back)")] = "-1",
) -> None:
    """Revert migrations down to REVISION."""
    from db.migrate import downgrade

    downgrade(get_settings().database_url, revision)
    console.print("database is at", revision)


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision and whether it is the latest."""
    from db.migrate import current, head

    rev = current(get_settings().database_url)
    console.print(f"current: {rev or '(empty)'}   head: {head()}")


@db_app.command("history")
def db_history() -> None:
    """List the migrations, oldest first."""
    from db.migrate import history

    for line in history():
        console.print(line)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored token under IDBATCH_PII_KEY and re-key the hashes.

    List the previous key in IDBATCH_PII_OLD_KEYS first; safe to run beside live workers
    and to run again. Drop the old key once this reports 0 rows (docs/security.md).
    """
    from db.keys import rotate_pii_keys
    from idbatch.pii import Vault, vault

    settings = get_settings()
    old = [Vault(k.get_secret_value().encode()) for k in settings.pii_old_keys]
    stats = rotate_pii_keys(vault(), old)
    console.print_json(
        json.dumps({"jobs": stats.jobs, "results": stats.results, "side_answers": stats.side_answers})
    )
