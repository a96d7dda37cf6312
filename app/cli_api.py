"""``idbatch api``, ``idbatch tenants …`` and ``idbatch webhooks …`` (issue 14)."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import os
from typing import Annotated, Any

import typer

from app.cli_common import app, console, err_console, require_free_port, require_schema
from idbatch.settings import get_settings

tenants_app = typer.Typer(help="API tenants and their keys.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
webhooks_app = typer.Typer(help="Webhook deliveries.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


def _split(value: str) -> list[str]:
    return [p for p in value.replace(",", " ").split() if p]


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="bind address (IDBATCH_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (IDBATCH_API_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn processes (IDBATCH_API_WORKERS)")] = None,
) -> None:
    """Serve the HTTP API for other services (OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    if "IDBATCH_DB_PRE_PING" not in os.environ:
        # No ping round trip per connection checkout (7 -> 3 round trips saved per single
        # card): after a Postgres restart one request per process fails (500, "retry it";
        # SQLAlchemy then drops the whole pool) and the caller's retry with its
        # Idempotency-Key is safe.
        os.environ["IDBATCH_DB_PRE_PING"] = "false"
        get_settings.cache_clear()
    settings = get_settings()
    if settings.broker_url.startswith("memory://"):
        # Accepting cards no process will ever verify would break the API's promise.
        console.print(
            "[red]idbatch api needs a real broker[/red] (IDBATCH_BROKER_URL=redis://…) and "
            "`idbatch worker` processes; the embedded mode's in-memory broker lives in one process"
        )
        raise typer.Exit(2)
    require_schema(settings.database_url)
    require_free_port(host or settings.api_host, port if port is not None else settings.api_port)
    extra: dict[str, Any] = {}
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # With --workers the supervisor kills a worker that does not answer its ping in
        # 5 s, dropping its connections; on a saturated box a healthy worker can be that
        # late (seen: a bench's connection closed under load average 15).
        extra["timeout_worker_healthcheck"] = 30
    uvicorn.run(
        "producers.api.app:asgi",
        factory=True,
        host=host or settings.api_host,
        port=port if port is not None else settings.api_port,
        workers=workers or settings.api_workers,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
        backlog=2048,
        **extra,
    )


@tenants_app.command("add")
def tenants_add(
    name: Annotated[str, typer.Argument(help="tenant name (unique)")],
    scopes: Annotated[str, typer.Option(help="space or comma separated: submit read reveal")] = "submit read",
    s3_allowed: Annotated[str, typer.Option(help="comma separated buckets (bucket or bucket/prefix)")] = "",
    providers: Annotated[
        str, typer.Option(help="comma separated providers (default: the deployment's)")
    ] = "",
    webhook_url: Annotated[str | None, typer.Option(help="default callback URL")] = None,
    quota: Annotated[float | None, typer.Option(help="requests/s (default IDBATCH_API_QUOTA_PER_S)")] = None,
    accounts: Annotated[
        str,
        typer.Option(
            help="comma separated provider:account (names in IDBATCH_ACCOUNTS) its jobs may use;"
            " a provider not named: any of the deployment's accounts"
        ),
    ] = "",
) -> None:
    """Create a tenant; prints its API key and webhook secret ONCE (only hashes/tokens are kept)."""
    from db.tenant_accounts import parse_accounts
    from db.tenants import TenantError, create_tenant
    from idbatch import images
    from idbatch.providers import KNOWN_PROVIDERS

    if not name.strip():
        err_console.print("a tenant needs a name")
        raise typer.Exit(2)
    unknown = [p for p in _split(providers) if p not in KNOWN_PROVIDERS]
    if unknown:  # else the tenant exists and every POST of it answers 422 invalid-config
        err_console.print(f"unknown provider {unknown[0]!r}; one of {', '.join(sorted(KNOWN_PROVIDERS))}")
        raise typer.Exit(2)
    if webhook_url:
        # The same check every callback URL gets at submit; refused here once, not on each POST.
        try:
            images.check_url(webhook_url, get_settings().allowed_private_hosts, resolve=False)
        except images.ImageRefError as exc:
            err_console.print(f"[red]webhook URL refused:[/red] {exc}")
            raise typer.Exit(2) from exc
    try:
        tenant_id, key, secret = create_tenant(
            name,
            scopes=tuple(_split(scopes)),
            s3_allowed=_split(s3_allowed),
            providers=_split(providers),
            webhook_url=webhook_url,
            quota_per_s=quota,
            accounts=parse_accounts(_split(accounts)),
        )
    except TenantError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    print(json.dumps({"tenant_id": tenant_id, "api_key": key, "webhook_secret": secret}))


@tenants_app.command("add-key")
def tenants_add_key(
    name: Annotated[str, typer.Argument(help="tenant name")],
    scopes: Annotated[str, typer.Option(help="submit read reveal")] = "submit read",
) -> None:
    """Another API key for a tenant (rotate: add, switch the caller, revoke the old one)."""
    from db.tenants import TenantError, add_key

    try:
        print(add_key(name, tuple(scopes.replace(",", " ").split())))
    except TenantError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


@tenants_app.command("accounts")
def tenants_accounts(
    name: Annotated[str, typer.Argument(help="tenant name")],
    provider: Annotated[str, typer.Argument(help="provider")],
    accounts: Annotated[
        list[str] | None, typer.Argument(help="account names in IDBATCH_ACCOUNTS; none: lift the restriction")
    ] = None,
) -> None:
    """Restrict a tenant's jobs on a provider to its own accounts (batches submitted from now on)."""
    from db.tenant_accounts import set_accounts
    from db.tenants import TenantError

    try:
        set_accounts(name, provider, list(accounts or []))
    except TenantError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    print(json.dumps({"tenant": name, "provider": provider, "accounts": list(accounts or [])}))


@tenants_app.command("list")
def tenants_list() -> None:
    """Tenants, their key ids, scopes and whether revoked (never a secret)."""
    from db.tenants import list_tenants

    console.print_json(json.dumps(list_tenants()))


@tenants_app.command("revoke-key")
def tenants_revoke_key(
    key_id: Annotated[str, typer.Argument(help="the key id (idb_<id>_…) or the whole key")],
) -> None:
    """Revoke an API key: its next request answers 401."""
    from db.tenants import revoke_key

    if not revoke_key(key_id):
        err_console.print("[red]no such active key[/red]")
        raise typer.Exit(2)
    console.print("revoked")


@tenants_app.command("rotate-webhook-secret")
def tenants_rotate_secret(
    name: Annotated[str, typer.Argument(help="tenant name")],
    overlap_hours: Annotated[float, typer.Option(help="hours the old secret keeps signing too")] = 24.0,
) -> None:
    """A new webhook signing secret (printed once); both sign until the overlap ends."""
    from db.tenants import TenantError, rotate_webhook_secret

    try:
        print(rotate_webhook_secret(name, dt.timedelta(hours=overlap_hours)))
    except TenantError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


@webhooks_app.command("redeliver")
def webhooks_redeliver(
    outbox_ids: Annotated[list[int] | None, typer.Argument(help="outbox ids (default: all failed)")] = None,
    batch: Annotated[int | None, typer.Option(help="only events of this batch")] = None,
) -> None:
    """Deliver events again now, with their original webhook-id (receivers de-duplicate)."""
    from db.webhooks import redeliver
    from dispatch.publish import publish_webhooks

    ids = redeliver(outbox_ids or None, batch_id=batch, failed_only=not outbox_ids and batch is None)
    publish_webhooks(ids)
    console.print(f"{len(ids)} event(s) queued for delivery")


@webhooks_app.command("status")
def webhooks_status() -> None:
    """Outbox events by status."""
    from db.session import session_scope
    from db.webhooks import outbox_summary

    with session_scope() as session:
        console.print_json(json.dumps(outbox_summary(session)))
