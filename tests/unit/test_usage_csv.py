"""A provider's usage export (``idbatch billing --against``): read as written, or refused
with the line that is wrong; never a raw KeyError, never a guess."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from db.billing import UsageError, read_usage

DEC = (dt.date(2026, 12, 1), dt.date(2026, 12, 31))


def _usage(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "usage.csv"
    path.write_text(text, encoding=encoding, newline="")
    return path


def test_a_bom_capitalised_headers_extra_columns_and_crlf(tmp_path: Path) -> None:
    text = (
        "Day , ACCOUNT,Region,Billable\r\n"
        "2026-12-01,main,cn,5\r\n2026-12-01,main,cn,2\r\n\r\n2026-12-02,b,cn,0\r\n"
    )
    path = _usage(tmp_path, text, encoding="utf-8-sig")
    assert read_usage(path, *DEC) == {("2026-12-01", "main"): 7, ("2026-12-02", "b"): 0}


def test_days_outside_the_range_and_other_accounts_are_left_out(tmp_path: Path) -> None:
    text = (
        "day,account,billable\n"
        "2025-01-01,main,9\n2026-12-05,main,1\n2027-01-05,main,9\n2026-12-05,other,4\n"
    )
    path = _usage(tmp_path, text)
    assert read_usage(path, *DEC) == {("2026-12-05", "main"): 1, ("2026-12-05", "other"): 4}
    assert read_usage(path, *DEC, account="main") == {("2026-12-05", "main"): 1}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty file"),
        ("date,acct,count\n2026-12-01,a,1\n", "no column day, account, billable"),
        ("day;account;billable\n2026-12-01;a;1\n", "no column day, account, billable"),
        ("day,account,billable\n12/01/2026,a,1\n", "line 2: day '12/01/2026' is not YYYY-MM-DD"),
        ("day,account,billable\n20261201,a,1\n", "line 2: day '20261201' is not YYYY-MM-DD"),
        ("day,account,billable\n2026-12-01,a,1\n2026-12-02,a,-3\n", "line 3: billable '-3' is not a whole"),
        ("day,account,billable\n2026-12-01,a,3.5\n", "line 2: billable '3.5' is not a whole"),
        ("day,account,billable\n2026-12-01,a,abc\n", "line 2: billable 'abc' is not a whole"),
        ("day,account,billable\n2026-12-01,a\n", "line 2: 2 fields, the header has 3"),
    ],
)
def test_what_cannot_be_read_is_refused_with_its_line(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(UsageError, match="^" + reason.replace("(", r"\(")):
        read_usage(_usage(tmp_path, text), *DEC)


def test_not_utf8_a_directory_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not UTF-8"):
        read_usage(_usage(tmp_path, "day,account,billable\n", encoding="utf-16"), *DEC)
    with pytest.raises(UsageError, match="directory"):
        read_usage(tmp_path, *DEC)
    with pytest.raises(UsageError, match="No such file"):
        read_usage(tmp_path / "nope.csv", *DEC)


def test_a_header_alone_is_no_usage(tmp_path: Path) -> None:
    assert read_usage(_usage(tmp_path, "day,account,billable\n"), *DEC) == {}
