"""Schedule slots: the latest due slot only (one catch-up), never one already fired."""

from __future__ import annotations

import datetime as dt

import pytest

from idbatch.reruns import PolicyError, RerunPolicy, check_cron, due_slot, next_slot

UTC = dt.UTC


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, second, tzinfo=UTC)


def test_a_slot_is_due_once_its_time_has_come() -> None:
    assert due_slot("0 2 * * *", at(1, 1), at(1, 1, 59, 59)) is None
    assert due_slot("0 2 * * *", at(1, 1), at(1, 2)) == at(1, 2)
    assert due_slot("0 2 * * *", at(1, 1), at(1, 2, 0, 30)) == at(1, 2)


def test_a_fired_slot_is_not_due_again() -> None:
    assert due_slot("0 2 * * *", at(1, 2), at(1, 23)) is None  # since = the last slot fired


def test_after_downtime_only_the_latest_missed_slot_is_caught_up() -> None:
    # three nights missed: one rerun the morning after, for the latest night
    assert due_slot("0 2 * * *", at(1, 2), at(4, 9)) == at(4, 2)


def test_naive_timestamps_from_sqlite_are_utc() -> None:
    assert due_slot("0 2 * * *", at(1, 1).replace(tzinfo=None), at(1, 3)) == at(1, 2)


def test_next_slot_and_bad_cron() -> None:
    assert next_slot("0 2 * * *", at(1, 2)) == at(2, 2)
    with pytest.raises(PolicyError):
        check_cron("every night")


def test_policy_round_trip_and_refusals() -> None:
    policy = RerunPolicy(only=("negative", "failed"), older_than_days=30, budget=1000)
    assert RerunPolicy.from_dict(policy.as_dict()) == policy
    assert policy.statuses == ("negative", "failed")
    assert RerunPolicy(only=("expiring",)).expiring_days == 30
    with pytest.raises(PolicyError):
        RerunPolicy(only=("sometimes",))
    with pytest.raises(PolicyError):
        RerunPolicy(budget=-1)
    with pytest.raises(PolicyError):
        RerunPolicy.from_dict({"budgett": 3})
