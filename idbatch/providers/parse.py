"""Small parsers shared by adapters: vendor dates and validity periods."""

from __future__ import annotations

import datetime as dt
import re

_DATE_PARTS = re.compile(r"(\d{4})\D{0,3}?(\d{1,2})\D{0,3}?(\d{1,2})")


def parse_date(value: str | None) -> dt.date | None:
    """Parse ``1987/1/1``, ``1987-01-01``, ``19870101``, ``1987.01.01``, ``1987年1月1日``."""
    if not value:
        return None
    match = _DATE_PARTS.search(value.strip())
    if not match:
        return None
    try:
        return dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def parse_validity(value: str | None) -> tuple[dt.date | None, dt.date | None, bool]:
    """``2010.07.21-2020.07.21`` or ``2010.07.21-长期`` -> (from, to, long_term)."""
    if not value:
        return None, None, False
    start_s, _, end_s = value.partition("-")
    long_term = "长期" in end_s
    return parse_date(start_s), (None if long_term else parse_date(end_s)), long_term


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
