"""A tenant's own provider accounts: names of ``IDBATCH_ACCOUNTS`` entries, per provider.

The tenant row names them (``tenant.accounts``, never a secret); a batch copies its
tenant's names for its provider at submit (``batch.accounts``), and the worker chooses
only among those (``workers.runtime.Runtime.allowed``). So the workers never read
tenants, and a change applies to batches submitted after it.
"""

from __future__ import annotations

from sqlalchemy import select

from db.api_shared import bump_auth_epoch
from db.models_api import Tenant
from db.session import session_scope
from db.tenants import TenantError

__all__ = ["account_pairs", "check_accounts", "parse_accounts", "set_accounts"]


def account_pairs(accounts: dict[str, list[str]] | None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``tenant.accounts`` as ``Principal.accounts``."""
    return tuple((p, tuple(names)) for p, names in sorted((accounts or {}).items()) if names)


def parse_accounts(specs: list[str]) -> dict[str, list[str]]:
    """``provider:account`` items (the limiter's own key form) grouped by provider."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        provider, sep, account = spec.partition(":")
        if not sep or not provider or not account:
            raise TenantError(f"account {spec!r} must be provider:account")
        names = out.setdefault(provider, [])
        if account not in names:
            names.append(account)
    return out


def check_accounts(accounts: dict[str, list[str]]) -> None:
    """Every named account must exist in this deployment's ``IDBATCH_ACCOUNTS``.

    Checked when a tenant is given accounts (not at each submit): a typo would otherwise
    leave the tenant's jobs waiting for an account no worker has.
    """
    from idbatch.providers import KNOWN_PROVIDERS, accounts_of
    from idbatch.settings import get_settings

    settings = get_settings()
    for provider, names in accounts.items():
        if provider not in KNOWN_PROVIDERS:
            raise TenantError(f"unknown provider {provider!r}")
        known = {a.name for a in accounts_of(settings, provider)}
        missing = [n for n in names if n not in known]
        if missing:
            raise TenantError(
                f"{provider} has no account {', '.join(missing)} in IDBATCH_ACCOUNTS"
                f" (known: {', '.join(sorted(known))})"
            )


def set_accounts(tenant: str, provider: str, names: list[str]) -> None:
    """Restrict ``tenant``'s jobs on ``provider`` to ``names``; an empty list lifts it.

    Applies to batches submitted from now on: a batch carries its restriction from
    submit (``batch.accounts``), so the workers never read tenants. API processes see the
    change when their cached key expires or the revocation epoch moves (bumped here).
    """
    if names:
        check_accounts({provider: names})
    with session_scope() as session:
        row = session.scalar(select(Tenant).where(Tenant.name == tenant).with_for_update())
        if row is None:
            raise TenantError(f"no tenant {tenant!r}")
        accounts = dict(row.accounts or {})
        if names:
            accounts[provider] = list(dict.fromkeys(names))
        else:
            accounts.pop(provider, None)
        row.accounts = accounts or None
    bump_auth_epoch()  # cached principals carry the accounts: drop them now
