"""Account-level stops: a circuit breaker per provider account, persisted in ``provider_account``.

An ``AccountBlocked`` answer (auth failure, arrears, quota exhausted) means no call on
that account can succeed until someone acts, so the circuit opens and every worker stops
calling: jobs claimed while it is open go back to ``retry_wait`` without spending an
attempt. The state lives in the database, not only in Redis, because the operator's
decision and the reason must survive a broker restart and show in ``idbatch status``.

    closed ──AccountBlocked──▶ open ──probe_after_s──▶ half_open (one real job is the probe)
      ▲                         ▲                          │
      │                         └──────AccountBlocked──────┤
      └──── ``idbatch accounts resume`` / probe answered ◀─┘

Workers read the state through a short in-process cache (``cache_s``), so a closed
circuit costs one query per account every few seconds, not one per call; a circuit this
process opens is known to it at once, and to the other processes within ``cache_s``.
"""

from __future__ import annotations

import datetime as dt
import enum
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import Batch, Job, ProviderAccount, utcnow
from db.session import session_scope
from idbatch.domain import JobStatus

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# How long jobs wait when only an operator can reopen the account (no probes).
BLOCKED_PAUSE_S = 300.0


class Admission(enum.Enum):
    ALLOW = "allow"
    PROBE = "probe"  # the circuit is half open and this call is the one probe
    DENY = "deny"


@dataclass(frozen=True)
class Decision:
    admission: Admission
    retry_in_s: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class _Seen:
    state: str
    reason: str
    updated_at: dt.datetime | None
    fetched: float  # monotonic


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


class CircuitBreaker:
    def __init__(
        self,
        *,
        probe_after_s: float = 300.0,
        cache_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.probe_after_s = probe_after_s
        self.cache_s = cache_s
        self._clock = clock
        self._wall = wall
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._lock = threading.Lock()

    def admit(self, provider: str, account: str) -> Decision:
        seen = self._state(provider, account)
        if seen.state == CLOSED:
            return Decision(Admission.ALLOW)
        now = self._wall()
        since = (now - (_aware(seen.updated_at) or now)).total_seconds()
        if self.probe_after_s > 0 and since >= self.probe_after_s and self._take_probe(provider, account):
            return Decision(Admission.PROBE)
        wait = self.probe_after_s - since if self.probe_after_s > 0 else BLOCKED_PAUSE_S
        # Spread the waiting jobs so that a resumed account is not hit by all of them at once.
        wait = max(1.0, wait) * random.uniform(1.0, 1.2)
        return Decision(Admission.DENY, wait, f"account circuit {seen.state}: {seen.reason}")

    def blocked(self, provider: str, account: str, reason: str, provider_code: str | None) -> None:
        """Open the circuit (or keep it open, restarting the probe clock)."""
        now = self._wall()
        with session_scope() as session:
            _upsert_open(session, provider, account, reason[:2000], provider_code, now)
        self._remember(provider, account, OPEN, reason, now)

    def probe_answered(self, provider: str, account: str) -> None:
        """The probe got an answer from the provider: the account works again."""
        now = self._wall()
        with session_scope() as session:
            session.execute(
                update(ProviderAccount)
                .where(ProviderAccount.provider == provider, ProviderAccount.account == account)
                .where(ProviderAccount.state == HALF_OPEN)
                .values(state=CLOSED, updated_at=now)
            )
        self._remember(provider, account, CLOSED, "", now)

    def forget(self) -> None:
        with self._lock:
            self._seen.clear()

    def _state(self, provider: str, account: str) -> _Seen:
        key = (provider, account)
        with self._lock:
            seen = self._seen.get(key)
        if seen is not None and self._clock() - seen.fetched < self.cache_s:
            return seen
        with session_scope() as session:
            row = session.execute(
                select(ProviderAccount.state, ProviderAccount.reason, ProviderAccount.updated_at).where(
                    ProviderAccount.provider == provider, ProviderAccount.account == account
                )
            ).one_or_none()
        if row is None:
            return self._remember(provider, account, CLOSED, "", None)
        return self._remember(provider, account, row.state, row.reason or "", row.updated_at)

    def _take_probe(self, provider: str, account: str) -> bool:
        """Atomically move open -> half_open; only the one worker that wins probes."""
        now = self._wall()
        cutoff = now - dt.timedelta(seconds=self.probe_after_s)
        with session_scope() as session:
            result = session.execute(
                update(ProviderAccount)
                .where(ProviderAccount.provider == provider, ProviderAccount.account == account)
                .where(ProviderAccount.state.in_((OPEN, HALF_OPEN)), ProviderAccount.updated_at <= cutoff)
                .values(state=HALF_OPEN, updated_at=now)
            )
            won = bool(result.rowcount)  # type: ignore[attr-defined]
        seen = self._seen.get((provider, account))
        self._remember(provider, account, HALF_OPEN, seen.reason if seen else "", now)
        return won

    def _remember(
        self, provider: str, account: str, state: str, reason: str, updated_at: dt.datetime | None
    ) -> _Seen:
        seen = _Seen(state, reason, updated_at, self._clock())
        with self._lock:
            self._seen[(provider, account)] = seen
        return seen


def _upsert_open(
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
    aware = _aware(value)
    return aware.isoformat() if aware else None


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
