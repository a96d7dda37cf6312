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

from db import accounts as store
from db.accounts import CLOSED, HALF_OPEN, OPEN, accounts, aware, resume
from db.models import utcnow
from db.session import session_scope

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "Admission", "CircuitBreaker", "Decision", "accounts", "resume"]
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
        since = (now - (aware(seen.updated_at) or now)).total_seconds()
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
            store.upsert_open(session, provider, account, reason[:2000], provider_code, now)
        self._remember(provider, account, OPEN, reason, now)

    def probe_answered(self, provider: str, account: str) -> None:
        """The probe got an answer from the provider: the account works again."""
        now = self._wall()
        with session_scope() as session:
            store.close_half_open(session, provider, account, now)
        self._remember(provider, account, CLOSED, "", now)

    def _state(self, provider: str, account: str) -> _Seen:
        key = (provider, account)
        with self._lock:
            seen = self._seen.get(key)
        if seen is not None and self._clock() - seen.fetched < self.cache_s:
            return seen
        with session_scope() as session:
            row = store.read_state(session, provider, account)
        if row is None:
            return self._remember(provider, account, CLOSED, "", None)
        return self._remember(provider, account, *row)

    def _take_probe(self, provider: str, account: str) -> bool:
        """Atomically move open -> half_open; only the one worker that wins probes."""
        now = self._wall()
        cutoff = now - dt.timedelta(seconds=self.probe_after_s)
        with session_scope() as session:
            won = store.take_probe(session, provider, account, now, cutoff)
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
