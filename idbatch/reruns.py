"""Rerun policies, the validity clock and schedule slots: the vocabulary of issue 15.

A compliance rerun asks the providers again, on purpose, about cards already verified.
Which cards (``RerunPolicy``), how many billable calls at most (the budget), and when
(a cron slot) are decided here, knowing no database: ``db.reruns`` turns a policy into
SQL, ``db.schedules`` records each slot fired.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from cronsim import CronSim, CronSimError

from idbatch.settings import Settings

ONLY_CHOICES = ("all", "passed", "negative", "failed", "expiring")

# Billable calls one card costs at most per provider: the OCR vendors bill front and back
# as two calls. A retried call is billed only when answered, so this bounds a rerun.
TWO_SIDED = frozenset({"tencent_ocr", "aliyun_market"})


class PolicyError(ValueError):
    """A policy or cron expression that cannot be used (said in one line)."""


def today(settings: Settings) -> dt.date:
    """The date card validity is judged against (expiry, expiring policies, drift).

    ``clock_offset_days`` moves it forward in tests and rehearsals ("what expires in 30
    days?") without touching the system clock; production refuses an offset.
    """
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=settings.clock_offset_days)).date()


@dataclass(frozen=True)
class RerunPolicy:
    """Which cards of a batch a rerun verifies again; the conditions combine with AND.

    - ``only``: by last outcome (``passed``, ``negative``, ``failed``: the job status last
      time; ``expiring``: validity ends within ``expiring_within_days``, default 30);
    - ``older_than_days``: the last answer is older than this;
    - ``expiring_within_days``: the card's validity ends within this many days;
    - ``ref_prefix``: the card's ``external_ref`` starts with this (a tag or source);
    - ``budget``: at most this many billable calls; cards beyond it stay ``pending``.
    """

    only: tuple[str, ...] = ("all",)
    older_than_days: int | None = None
    expiring_within_days: int | None = None
    ref_prefix: str | None = None
    budget: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        unknown = [o for o in self.only if o not in ONLY_CHOICES]
        if unknown or not self.only:
            raise PolicyError(f"--only takes {', '.join(ONLY_CHOICES)}; got {', '.join(unknown) or 'none'}")
        for name in ("older_than_days", "expiring_within_days", "budget"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise PolicyError(f"{name} must not be negative")

    @property
    def statuses(self) -> tuple[str, ...]:
        """Last-time job statuses selected (empty: any)."""
        return tuple(o for o in self.only if o in ("passed", "negative", "failed"))

    @property
    def expiring_days(self) -> int | None:
        if self.expiring_within_days is not None:
            return self.expiring_within_days
        return 30 if "expiring" in self.only else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        data["only"] = list(self.only)
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RerunPolicy:
        known = {"only", "older_than_days", "expiring_within_days", "ref_prefix", "budget"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PolicyError(f"unknown policy keys: {', '.join(unknown)}")
        values = dict(data)
        only = values.pop("only", ["all"])
        return cls(only=tuple([only] if isinstance(only, str) else only), **values)


def calls_per_card(provider: str, has_back: bool) -> int:
    """The most billable calls verifying one card can cost (front, and back if sent)."""
    return 2 if provider in TWO_SIDED and has_back else 1


def price(settings: Settings, provider: str, calls: int) -> float | None:
    """The cost of ``calls`` billable calls, when the provider's price is configured."""
    unit = settings.call_prices.get(provider)
    return None if unit is None else round(unit * calls, 4)


def check_cron(expression: str) -> str:
    """``expression`` if it is a valid five-field cron expression (UTC), else PolicyError."""
    try:
        CronSim(expression, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    except CronSimError as exc:
        raise PolicyError(f"not a cron expression: {expression!r} ({exc})") from exc
    return expression


def due_slot(expression: str, since: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    """The latest slot of ``expression`` in ``(since, now]``, or None.

    Only the latest: after downtime a schedule catches up *one* missed slot (a nightly
    compliance rerun run twice in a row the morning after would pay twice for nothing).
    ``since`` is the last slot fired (or the schedule's creation).
    """
    since, now = _utc(since), _utc(now)
    # cronsim works in whole seconds and walks back strictly before its start: start a
    # second late and skip a slot that is still ahead of ``now``.
    for slot in CronSim(expression, now + dt.timedelta(seconds=1), reverse=True):
        previous = slot.astimezone(dt.UTC)
        if previous <= now:
            return previous if previous > since else None
    return None


def next_slot(expression: str, after: dt.datetime) -> dt.datetime:
    """The first slot strictly after ``after`` (for ``schedule list``)."""
    return next(iter(CronSim(expression, _utc(after)))).astimezone(dt.UTC)


def _utc(moment: dt.datetime) -> dt.datetime:
    """Aware UTC; SQLite hands stored timestamps back naive (they were written as UTC)."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
