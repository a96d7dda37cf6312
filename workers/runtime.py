"""Per-process resources for workers: one httpx client, provider adapters, settings.

Built lazily on first use so that a forked or freshly started worker process makes its
own connections; shared by all threads of the pool (httpx.Client is thread-safe).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from functools import lru_cache

import httpx

from idbatch.providers import build_providers
from idbatch.providers.base import Provider
from idbatch.settings import Settings, get_settings
from workers.gate import AccountGate, build_gate


@dataclass
class Runtime:
    settings: Settings
    client: httpx.Client
    worker_id: str
    _providers: dict[str, dict[str, Provider]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _gate: AccountGate | None = None

    def gate(self) -> AccountGate:
        """The circuit breaker + shared rate limiter in front of every provider call."""
        with self._lock:
            if self._gate is None:
                self._gate = build_gate(self.settings)
            return self._gate

    def accounts(self, name: str) -> dict[str, Provider]:
        """The provider's adapters by account name (one per credential set)."""
        with self._lock:
            if name not in self._providers:
                built = build_providers(name, self.settings, self.client)
                self._providers[name] = {p.account: p for p in built}
            return self._providers[name]

    def allowed(self, name: str, only: tuple[str, ...]) -> dict[str, Provider]:
        """The adapters a job may be called (and billed) on: every account of the provider,
        or, when its batch names its tenant's accounts, only those.

        An account that is named but not configured is left out, never replaced by
        another: with none left the job waits (``verify`` defers it as account_blocked)
        rather than run on an account that is not its tenant's.
        """
        adapters = self.accounts(name)
        if not only:
            return adapters
        return {a: p for a, p in adapters.items() if a in only}

    def provider(self, name: str, account: str | None = None) -> Provider:
        """One account's adapter (default: the first configured)."""
        adapters = self.accounts(name)
        return adapters[account] if account is not None else next(iter(adapters.values()))


def make_client(settings: Settings) -> httpx.Client:
    n = settings.worker_concurrency
    return httpx.Client(
        timeout=httpx.Timeout(settings.http_timeout_s, connect=min(5.0, settings.http_timeout_s)),
        limits=httpx.Limits(max_connections=n * 2, max_keepalive_connections=n),
    )


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    settings = get_settings()
    # A thread sleeping until its rate slot (workers.ratelimit) must get the GIL back
    # promptly when it wakes: 1 ms instead of the default 5 ms switch interval keeps
    # its lateness inside the limiter's headroom when the other threads are busy.
    sys.setswitchinterval(0.001)
    return Runtime(
        settings=settings, client=make_client(settings), worker_id=f"{socket.gethostname()}:{os.getpid()}"
    )


def reset() -> None:
    if runtime.cache_info().currsize:
        runtime().client.close()
    runtime.cache_clear()
