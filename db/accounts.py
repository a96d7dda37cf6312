"""Provider accounts: the durable circuit state per (provider, account).

The breaker's logic lives in ``workers.circuit``; these are its reads and writes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import Batch, Job, ProviderAccount, utcnow
from idbatch.domain import JobStatus

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def read_state(session: Session, provider: str, account: str) -> tuple[str, str, dt.datetime | None] | None:
    row = session.execute(
        select(ProviderAccount.state, ProviderAccount.reason, ProviderAccount.updated_at).where(
            ProviderAccount.provider == provider, ProviderAccount.account == account
        )
    ).one_or_none()
    return None if row is None else (row.state, row.reason or "", row.updated_at)


def close_half_open(session: Session, provider: str, account: str, now: dt.datetime) -> None:
    """The probe got an answer: the account works again."""
    session.execute(
        update(ProviderAccount)
        .where(ProviderAccount.provider == provider, ProviderAccount.account == account)
        .where(ProviderAccount.state == HALF_OPEN)
        .values(state=CLOSED, updated_at=now)
    )


def take_probe(session: Session, provider: str, account: str, now: dt.datetime, cutoff: dt.datetime) -> bool:
    """Atomically move open -> half_open if it has been open since ``cutoff``; True if we won."""
    result = session.execute(
        update(ProviderAccount)
        .where(ProviderAccount.provider == provider, ProviderAccount.account == account)
        .where(ProviderAccount.state.in_((OPEN, HALF_OPEN)), ProviderAccount.updated_at <= cutoff)
        .values(state=HALF_OPEN, updated_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def upsert_open(
    session: Session, provider: str, account: str, reason: str, code: str | None, now: dt.datetime
) -> None:
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(ProviderAccount).values(
        provider=provider,
        account=account,
        state=OPEN,
        reason=reason,
        provider_code=code,
        opened_at=now,
        updated_at=now,
    )
    table = ProviderAccount.__table__
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.provider, table.c.account],
        set_={
            "state": OPEN,
            "reason": reason,
            "provider_code": code,
            # Keep when it first opened, across the repeated blocks of in-flight calls.
            "opened_at": case((table.c.state == OPEN, table.c.opened_at), else_=stmt.excluded.opened_at),
            "updated_at": now,
        },
    )
    session.execute(stmt)


def _iso(value: dt.datetime | None) -> str | None:
    aware_value = aware(value)
    return aware_value.isoformat() if aware_value else None


def resume(session: Session, provider: str, account: str | None = None) -> int:
    """The operator's "try again": close the circuit of one account or of every account."""
    stmt = update(ProviderAccount).where(
        ProviderAccount.provider == provider, ProviderAccount.state != CLOSED
    )
    if account is not None:
        stmt = stmt.where(ProviderAccount.account == account)
    now = utcnow()
    result = session.execute(stmt.values(state=CLOSED, updated_at=now))
    # Jobs parked by the open circuit become due now instead of at their long pause.
    session.execute(
        update(Job)
        .where(
            Job.status == JobStatus.RETRY_WAIT,
            Job.error_class == "account_blocked",
            Job.next_attempt_at > now,
        )
        .where(Job.batch_id.in_(select(Batch.id).where(Batch.provider == provider)))
        .values(next_attempt_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def accounts(session: Session, *, only_stopped: bool = False) -> list[dict[str, Any]]:
    """Every provider account with a recorded circuit, for ``idbatch status``/``accounts``."""
    stmt = select(ProviderAccount).order_by(ProviderAccount.provider, ProviderAccount.account)
    if only_stopped:
        stmt = stmt.where(ProviderAccount.state != CLOSED)
    return [
        {
            "provider": row.provider,
            "account": row.account,
            "state": row.state,
            "reason": row.reason,
            "provider_code": row.provider_code,
            "opened_at": _iso(row.opened_at),
            "updated_at": _iso(row.updated_at),
        }
        for row in session.scalars(stmt)
    ]
