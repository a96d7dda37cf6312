"""Tenants, API keys and caller idempotency keys: every query the HTTP API makes about them.

API keys look like ``idb_<key_id>_<secret>``: ``key_id`` finds the row, the secret is
compared against its sha256 in constant time. A key is shown once, at creation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.orm import Session

from db.api_shared import bump_auth_epoch
from db.models import Batch, utcnow
from db.models_api import ApiKey, BatchCallback, IdempotencyRecord, Tenant
from db.session import engine, session_scope
from idbatch.pii import associated_data, vault

SCOPES = ("submit", "read", "reveal")
AD_WEBHOOK_SECRET = associated_data("tenant", "webhook_secret_enc")
AD_WEBHOOK_OLD_SECRET = associated_data("tenant", "webhook_old_secret_enc")


class TenantError(ValueError):
    """A tenant operation that cannot be done (unknown name, bad scope, duplicate)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant behind a valid, unrevoked key, and what it may do."""

    tenant_id: int
    tenant: str
    key_id: str
    scopes: frozenset[str]
    s3_allowed: tuple[str, ...]
    providers: tuple[str, ...]
    quota_per_s: float | None
    webhook_url: str | None
    # (provider, account names) pairs: the tenant's own accounts; a provider not named
    # here runs on any of the deployment's accounts (``db.tenant_accounts``). Pairs, not
    # a dict: the dataclass stays frozen and hashable.
    accounts: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def accounts_for(self, provider: str) -> tuple[str, ...]:
        """The accounts this tenant's jobs on ``provider`` may use; empty: any."""
        return next((names for p, names in self.accounts if p == provider), ())


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 32 random bytes."""
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_tenant(
    name: str,
    *,
    scopes: tuple[str, ...] = ("submit", "read"),
    s3_allowed: list[str] | None = None,
    providers: list[str] | None = None,
    webhook_url: str | None = None,
    quota_per_s: float | None = None,
    accounts: dict[str, list[str]] | None = None,
) -> tuple[int, str, str]:
    """A new tenant with one API key: (tenant id, the key, the webhook secret), shown once."""
    from db.tenant_accounts import check_accounts

    if accounts:
        check_accounts(accounts)
    with session_scope() as session:
        if session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
            raise TenantError(f"tenant {name!r} exists")
        secret = new_webhook_secret()
        tenant = Tenant(
            name=name,
            s3_allowed=list(s3_allowed or []),
            providers=list(providers or []),
            webhook_url=webhook_url,
            webhook_secret_enc=vault().encrypt(secret, AD_WEBHOOK_SECRET),
            quota_per_s=quota_per_s,
            accounts=accounts or None,
        )
        session.add(tenant)
        session.flush()
        tenant_id = tenant.id
    return tenant_id, add_key(name, scopes), secret


def add_key(tenant: str, scopes: tuple[str, ...]) -> str:
    """Another API key for ``tenant`` (key rotation: add, switch callers, revoke the old)."""
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise TenantError(f"scopes must be among {', '.join(SCOPES)}; got {', '.join(sorted(unknown))}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with session_scope() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == tenant))
        if tenant_id is None:
            raise TenantError(f"no tenant {tenant!r}")
        session.add(
            ApiKey(tenant_id=tenant_id, key_id=key_id, secret_hash=_hash(secret), scopes=" ".join(scopes))
        )
    return f"idb_{key_id}_{secret}"


def revoke_key(key_id: str) -> bool:
    """Revoke a key by its id (the part after ``idb_``).

    API processes cache verified keys; after the commit the shared revocation epoch is
    bumped (``db.api_shared``), so the key's very next request in any API process is 401.
    Without Redis (or if the bump fails) it is 401 within ``api_auth_cache_s``.
    """
    key_id = key_id.removeprefix("idb_").split("_", 1)[0]
    with session_scope() as session:
        res = session.execute(
            update(ApiKey)
            .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        revoked = bool(res.rowcount)  # type: ignore[attr-defined]
    if revoked:
        bump_auth_epoch()
    return revoked


def list_tenants() -> list[dict[str, Any]]:
    """Tenants with their keys' ids, scopes and state (never a secret)."""
    with session_scope() as session:
        tenants = session.scalars(select(Tenant).order_by(Tenant.id)).all()
        keys = session.scalars(select(ApiKey).order_by(ApiKey.id)).all()
        return [
            {
                "id": t.id,
                "name": t.name,
                "s3_allowed": t.s3_allowed,
                "providers": t.providers,
                "webhook_url": t.webhook_url,
                "quota_per_s": t.quota_per_s,
                "accounts": t.accounts or {},
                "keys": [
                    {"key_id": k.key_id, "scopes": k.scopes, "revoked": k.revoked_at is not None}
                    for k in keys
                    if k.tenant_id == t.id
                ],
            }
            for t in tenants
        ]


def rotate_webhook_secret(tenant: str, overlap: dt.timedelta) -> str:
    """A new signing secret; the old one keeps signing beside it for ``overlap``."""
    secret = new_webhook_secret()
    with session_scope() as session:
        row = session.scalar(select(Tenant).where(Tenant.name == tenant).with_for_update())
        if row is None:
            raise TenantError(f"no tenant {tenant!r}")
        old = vault().decrypt(row.webhook_secret_enc, AD_WEBHOOK_SECRET)
        row.webhook_old_secret_enc = vault().encrypt(old, AD_WEBHOOK_OLD_SECRET)
        row.webhook_old_until = utcnow() + overlap
        row.webhook_secret_enc = vault().encrypt(secret, AD_WEBHOOK_SECRET)
    return secret


def signing_secrets(session: Session, tenant_id: int, now: dt.datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the old one during a switch."""
    row = session.get(Tenant, tenant_id)
    if row is None:
        return []
    out = [s for s in [vault().decrypt(row.webhook_secret_enc, AD_WEBHOOK_SECRET)] if s]
    if row.webhook_old_secret_enc is not None and row.webhook_old_until is not None:
        until = row.webhook_old_until
        if until.tzinfo is None:  # SQLite returns naive datetimes
            until = until.replace(tzinfo=dt.UTC)
        old = vault().decrypt(row.webhook_old_secret_enc, AD_WEBHOOK_OLD_SECRET)
        if old and until > now:
            out.append(old)
    return out


def authenticate(token: str) -> Principal | None:
    """The principal of a presented key, or None (unknown, malformed, wrong secret, revoked)."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "idb" or not parts[1] or not parts[2]:
        return None
    with session_scope() as session:
        row = session.execute(
            select(ApiKey.secret_hash, ApiKey.scopes, ApiKey.revoked_at, Tenant)
            .join(Tenant, Tenant.id == ApiKey.tenant_id)
            .where(ApiKey.key_id == parts[1])
        ).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_hash, _hash(parts[2])):
        return None
    t: Tenant = row.Tenant
    return Principal(
        t.id,
        t.name,
        parts[1],
        frozenset(row.scopes.split()),
        tuple(t.s3_allowed or ()),
        tuple(t.providers or ()),
        t.quota_per_s,
        t.webhook_url,
        tuple((p, tuple(names)) for p, names in sorted((t.accounts or {}).items()) if names),
    )


def create_tenant_batch(
    tenant_id: int,
    *,
    source: str,
    kind: Any,
    provider: str,
    config: dict[str, Any],
    callback_url: str | None,
    event: str,
    progress_step: int | None = None,
    accounts: tuple[str, ...] = (),
) -> int:
    """A batch owned by ``tenant_id``, with its callback row when someone wants to hear of its end.

    ``accounts``: the tenant's accounts for ``provider`` (empty: any), fixed on the batch.
    """
    with session_scope() as session:
        batch = Batch(
            source=source,
            kind=kind,
            provider=provider,
            provider_config=config,
            tenant_id=tenant_id,
            accounts=list(accounts) or None,
        )
        session.add(batch)
        session.flush()
        if callback_url:
            session.add(
                BatchCallback(
                    batch_id=batch.id,
                    tenant_id=tenant_id,
                    url=callback_url,
                    event=event,
                    state="pending",
                    progress_step=progress_step,
                    progress_sent=0,
                )
            )
        return batch.id


# -- caller idempotency keys (IETF httpapi Idempotency-Key draft) -------------------------


@dataclass(frozen=True)
class KeyState:
    """What a presented Idempotency-Key means: ``claimed`` (go on), ``replay``, ``conflict``, ``mismatch``."""

    outcome: str
    record_id: int | None = None
    status_code: int | None = None
    response: dict[str, Any] | None = None


# Plain SQL that Postgres and SQLite (3.35+) both speak. SQLAlchemy cannot cache the
# compiled form of its dialect ``insert().on_conflict_do_nothing()`` ("no key": compiled
# again on every request, a tenth of a single card's CPU); a ``text()`` it caches.
_CLAIM = text(
    "INSERT INTO idempotency_record (tenant_id, key, fingerprint, state, created_at, expires_at) "
    "VALUES (:tenant_id, :key, :fingerprint, 'in_progress', :created_at, :expires_at) "
    "ON CONFLICT (tenant_id, key) DO NOTHING RETURNING id"
).bindparams(
    bindparam("created_at", type_=IdempotencyRecord.__table__.c.created_at.type),
    bindparam("expires_at", type_=IdempotencyRecord.__table__.c.expires_at.type),
)
_FIND_RECORD = select(
    IdempotencyRecord.id,
    IdempotencyRecord.fingerprint,
    IdempotencyRecord.state,
    IdempotencyRecord.status_code,
    IdempotencyRecord.response,
    IdempotencyRecord.expires_at,
).where(IdempotencyRecord.tenant_id == bindparam("tenant_id"), IdempotencyRecord.key == bindparam("key"))


def claim_idempotency_key(tenant_id: int, key: str, fingerprint: str, ttl_s: float) -> KeyState:
    """Take ``key`` for this request, or say what the earlier request with it decides.

    One ``INSERT .. ON CONFLICT DO NOTHING``: of two concurrent requests exactly one gets
    the row; the other sees it ``in_progress`` (409). An expired record is replaced.
    Core statements on a bare connection (the common case, a new key, is one round trip
    and the commit).
    """
    now = utcnow()
    eng = engine()
    for _ in range(2):
        with eng.begin() as conn:
            if eng.dialect.name == "postgresql":
                # The claim's commit need not wait for its WAL flush: if the server crashed
                # before the flush, the claim is simply gone and the caller's retry runs
                # afresh (no job exists: the card's write is a later transaction). Once the
                # card's write commits synchronously, the WAL up to it, claim included, is
                # on disk. Saves one fsync wait per single card (a tail-latency source).
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            new_id = conn.execute(
                _CLAIM,
                {
                    "tenant_id": tenant_id,
                    "key": key,
                    "fingerprint": fingerprint,
                    "created_at": now,
                    "expires_at": now + dt.timedelta(seconds=ttl_s),
                },
            ).scalar()
            if new_id is not None:
                return KeyState("claimed", int(new_id))
            rec = conn.execute(_FIND_RECORD, {"tenant_id": tenant_id, "key": key}).one_or_none()
            if rec is None:
                continue  # deleted meanwhile: try again
            expires = rec.expires_at if rec.expires_at.tzinfo else rec.expires_at.replace(tzinfo=dt.UTC)
            if expires <= now:
                conn.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == rec.id))
                continue
            if rec.fingerprint != fingerprint:
                return KeyState("mismatch", rec.id)
            if rec.state != "done":
                return KeyState("conflict", rec.id)
            return KeyState("replay", rec.id, rec.status_code, rec.response)
    return KeyState("conflict")


def complete_idempotency_key(record_id: int, status_code: int, response: dict[str, Any]) -> None:
    """Store the first response; every later request with the key and body gets it back."""
    with session_scope() as session:
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == record_id)
            .values(state="done", status_code=status_code, response=response)
        )


def release_idempotency_key(record_id: int) -> None:
    """The request failed on our side (5xx): forget the key so the caller's retry runs afresh."""
    with session_scope() as session:
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))


def purge_idempotency_keys(now: dt.datetime) -> int:
    """Drop records past their time (the webhook sweep calls this)."""
    with session_scope() as session:
        res = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now))
        return int(res.rowcount)  # type: ignore[attr-defined]


def stored_answer(tenant_id: int, key: str) -> tuple[int, dict[str, Any]] | None:
    """The stored first answer under ``key`` of this tenant (done and not expired), or None."""
    now = utcnow()
    with session_scope() as session:
        rec = session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key
            )
        )
        if rec is None or rec.state != "done" or rec.status_code is None:
            return None
        expires = rec.expires_at if rec.expires_at.tzinfo else rec.expires_at.replace(tzinfo=dt.UTC)
        return None if expires <= now else (rec.status_code, dict(rec.response or {}))
