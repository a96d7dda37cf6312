"""Simulator state shared by every protocol: accounts, rate limits, faults, billing.

Rate limits are a sliding one-second window per account: a call is over quota if the
account already had ``quota`` accepted calls in the preceding second. That is stricter
than a fixed per-second bucket, so a client that passes here passes there too.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.cards import RegistryEntry
from simulator.codes import ALIYUN_MESSAGES, Code, resolve


@dataclass
class CodeFault:
    """One documented code on demand: with a probability per call, or for the next N calls.

    ``message`` picks one of the documented messages where a status has several (Aliyun);
    ``place`` is where a Tencent FaceID code goes: ``error`` (``Response.Error``, the
    default) or ``result`` (the answer's ``Result`` field, as business answers come).
    """

    code: Code
    rate: float = 0.0
    count: int = 0
    message: str | None = None
    place: str = "error"

    def options(self) -> dict[str, Any]:
        return {"in": self.place, "message": self.message}


def _code_fault(key: str, value: Any, *, counted: bool) -> tuple[str, CodeFault]:
    """``(canonical key, fault)`` from one knob entry; KeyError/ValueError if it is wrong."""
    protocol, code = resolve(key)
    spec: dict[str, Any] = value if isinstance(value, dict) else {"count" if counted else "rate": value}
    unknown = set(spec) - {"rate", "count", "message", "in"}
    if unknown:
        raise KeyError(f"{key}: unknown option {sorted(unknown)}")
    message = spec.get("message")
    if message is not None and (protocol != "aliyun" or message not in ALIYUN_MESSAGES[code.status]):
        raise ValueError(f"{key}: message must be one of the seed's messages for {code.code}")
    place = str(spec.get("in", "error"))
    if place not in ("error", "result") or (place == "result" and protocol != "faceid"):
        raise ValueError(f"{key}: 'in' is 'error' or (FaceID only) 'result'")
    fault = CodeFault(code, float(spec.get("rate", 0.0)), int(spec.get("count", 0)), message, place)
    return f"{protocol}:{code.code}", fault


@dataclass
class Faults:
    """Injected misbehaviour; rates are probabilities per call."""

    rate_429: float = 0.0
    rate_450: float = 0.0
    rate_5xx: float = 0.0
    rate_timeout: float = 0.0
    rate_reset: float = 0.0
    rate_slow: float = 0.0
    slow_s: float = 5.0
    latency_ms: float = 0.0  # median
    latency_sigma: float = 0.0  # log-normal spread; 0 = constant
    outage_until: float = 0.0  # monotonic time; every call fails with 5xx before it
    arrears: set[str] = field(default_factory=set)  # accounts that are "in arrears"
    # Documented codes on demand, by "protocol:code" (simulator.codes.resolve).
    codes: dict[str, CodeFault] = field(default_factory=dict)  # with a rate per call
    next: dict[str, CodeFault] = field(default_factory=dict)  # for the next N calls
    # Shapes: OCR warning list "current" (-9101..-9111) or "seed" (003_'s -9100..-9107);
    # Aliyun ``msg`` as an "object" or a "list" of one object; extra undocumented fields.
    ocr_warn_list: str = "current"
    aliyun_msg: str = "object"
    extra_fields: bool = False

    def update(self, values: dict[str, Any]) -> None:
        """Apply knobs all or nothing: a wrong one (KeyError/ValueError) changes none."""
        trial = copy.deepcopy(self)
        trial._apply(values)
        self.__dict__.update(trial.__dict__)

    def _apply(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key == "arrears":
                self.arrears = set(value)
            elif key in ("codes", "next"):
                table = json.loads(value) if isinstance(value, str) else value
                target = self.codes if key == "codes" else self.next
                for code_key, spec in dict(table).items():
                    canonical, fault = _code_fault(code_key, spec, counted=key == "next")
                    target.pop(canonical, None)
                    if fault.rate > 0 or fault.count > 0:
                        target[canonical] = fault
            elif key == "extra_fields":
                self.extra_fields = str(value).lower() in ("1", "true") or value is True
            elif key in ("ocr_warn_list", "aliyun_msg"):
                allowed = ("current", "seed") if key == "ocr_warn_list" else ("object", "list")
                if value not in allowed:
                    raise ValueError(f"{key} is one of {allowed}")
                setattr(self, key, value)
            elif key == "outage_s":
                self.outage_until = time.monotonic() + float(value)
            elif hasattr(self, key):
                setattr(self, key, type(getattr(self, key))(value))
            else:
                raise KeyError(key)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rate_429": self.rate_429,
            "rate_450": self.rate_450,
            "rate_5xx": self.rate_5xx,
            "rate_timeout": self.rate_timeout,
            "rate_reset": self.rate_reset,
            "rate_slow": self.rate_slow,
            "slow_s": self.slow_s,
            "latency_ms": self.latency_ms,
            "latency_sigma": self.latency_sigma,
            "outage_remaining_s": max(0.0, self.outage_until - time.monotonic()),
            "arrears": sorted(self.arrears),
            "codes": {k: {"rate": f.rate, **f.options()} for k, f in self.codes.items()},
            "next": {k: {"count": f.count, **f.options()} for k, f in self.next.items()},
            "ocr_warn_list": self.ocr_warn_list,
            "aliyun_msg": self.aliyun_msg,
            "extra_fields": self.extra_fields,
        }

    def take(self, protocol: str, rng: random.Random) -> CodeFault | None:
        """The documented code this call of ``protocol`` must answer, if a knob says so.

        "next N" knobs go first, in the order they were set, one call each; then every
        rate knob of the protocol rolls once.
        """
        prefix = protocol + ":"
        for key, fault in self.next.items():
            if key.startswith(prefix):
                fault.count -= 1
                if fault.count <= 0:
                    del self.next[key]
                return fault
        for key, fault in self.codes.items():
            if key.startswith(prefix) and rng.random() < fault.rate:
                return fault
        return None


@dataclass
class AccountStats:
    calls: int = 0
    billable: int = 0
    over_quota: int = 0
    injected: int = 0
    by_code: Counter[str] = field(default_factory=Counter)
    billable_keys: Counter[str] = field(default_factory=Counter)


class SlidingWindow:
    """Admitted calls' arrival times, sorted; at most ``quota`` of them in any one second.

    Arrival times come from when each request *arrived* (its handler started), not from
    when it was processed: a provider's edge counts requests as they come in, and on a
    loaded test machine the simulator's own processing delay (reading a 100 KB body,
    checking a signature, other requests interleaved) would otherwise be charged to the
    client as jitter. So stamps can come in slightly out of order, and a late-processed
    call is admitted only if *every* one-second window it falls in stays within quota:
    the one ending at its arrival, and those ending at calls admitted after it. A
    provider judging in arrival order would have refused one of those later calls
    instead; the number of refusals is the same.
    """

    KEEP_S = 10.0  # how far back stamps are kept: processing is never this late

    def __init__(self, quota: float, window_s: float = 1.0) -> None:
        self.quota = quota
        self.window_s = window_s
        self._stamps: list[float] = []
        self._latest = float("-inf")

    def _count(self, end: float) -> int:
        """Admitted calls in the window (end - window_s, end]."""
        return bisect.bisect_right(self._stamps, end) - bisect.bisect_right(self._stamps, end - self.window_s)

    def admit(self, now: float) -> bool:
        self._latest = max(self._latest, now)
        horizon = self._latest - self.KEEP_S
        if self._stamps and self._stamps[0] < horizon:
            del self._stamps[: bisect.bisect_left(self._stamps, horizon)]
        if self._count(now) >= self.quota:
            return False
        later = self._stamps[bisect.bisect_right(self._stamps, now) :]
        if any(self._count(t) >= self.quota for t in later if t < now + self.window_s):
            return False
        bisect.insort(self._stamps, now)
        return True


class SimState:
    def __init__(
        self,
        *,
        registry: dict[str, RegistryEntry] | None = None,
        quotas: dict[str, float] | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # When a request arrived, for the rate windows; a test may pass a clock of its own.
        self.clock = clock
        self.registry: dict[str, RegistryEntry] = registry or {}
        self.faults = Faults()
        # Documented rates: FaceID 100/s, OCR 20/s; the Aliyun vendor documents none.
        self.quotas: dict[str, float] = {"acedata": 50.0, "faceid": 100.0, "ocr": 20.0, **(quotas or {})}
        self.stats: dict[str, AccountStats] = {}
        self._windows: dict[str, SlidingWindow] = {}
        self.rng = random.Random(seed)
        self.lock = asyncio.Lock()

    def account(self, key: str) -> AccountStats:
        return self.stats.setdefault(key, AccountStats())

    def admit(self, protocol: str, account: str, arrived: float | None = None) -> bool:
        """Count the call and apply the account's rate limit; False = over quota.

        ``arrived`` is the ``self.clock()`` at which the request arrived (default: now).
        """
        stats = self.account(account)
        stats.calls += 1
        quota = self.quotas.get(f"{protocol}:{account}", self.quotas.get(protocol, 1e9))
        window = self._windows.get(account)
        if window is None or window.quota != quota:
            window = self._windows[account] = SlidingWindow(quota)
        if not window.admit(self.clock() if arrived is None else arrived):
            stats.over_quota += 1
            return False
        return True

    def bill(self, account: str, code: str, item_key: str | None) -> None:
        stats = self.account(account)
        stats.billable += 1
        stats.by_code[code] += 1
        if item_key:
            stats.billable_keys[item_key] += 1

    def record(self, account: str, code: str) -> None:
        self.account(account).by_code[code] += 1

    async def latency(self) -> None:
        f = self.faults
        delay = 0.0
        if f.latency_ms > 0:
            delay = f.latency_ms / 1000.0
            if f.latency_sigma > 0:
                delay = self.rng.lognormvariate(0.0, f.latency_sigma) * delay
        if f.rate_slow and self.rng.random() < f.rate_slow:
            delay += f.slow_s
        if delay > 0:
            await asyncio.sleep(delay)

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def in_outage(self) -> bool:
        return time.monotonic() < self.faults.outage_until

    def stats_json(self) -> dict[str, Any]:
        return {
            "accounts": {
                key: {
                    "calls": s.calls,
                    "billable": s.billable,
                    "over_quota": s.over_quota,
                    "injected": s.injected,
                    "by_code": dict(s.by_code),
                    "duplicate_billable": sum(n - 1 for n in s.billable_keys.values() if n > 1),
                }
                for key, s in self.stats.items()
            },
            "faults": self.faults.as_dict(),
            "quotas": self.quotas,
        }

    def revoke(self, id_numbers: list[str]) -> int:
        """Drop identities from the registry (a cancelled card); how many were enrolled."""
        return sum(self.registry.pop(str(n), None) is not None for n in id_numbers)

    def reset_stats(self) -> None:
        self.stats.clear()
        self._windows.clear()
