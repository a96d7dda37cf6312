"""Local checks on an ID number (GB 11643-1999) and its consistency with printed fields.

python-stdnum does the checksum, the birth date and the birth place valid for the
birth year; we only add the cross-checks against what the provider recognized.
"""

from __future__ import annotations

import datetime as dt
import threading
from functools import lru_cache

from stdnum import exceptions as stdnum_exc
from stdnum import numdb
from stdnum.cn import ric

from idbatch.domain import Warn, WarningCode, WarningSource

# Full-width digits and X, as CJK input methods type them: the same characters, read as ASCII.
_FULL_WIDTH = str.maketrans({chr(0xFF10 + i): str(i) for i in range(10)} | {"\uff38": "X", "\uff58": "x"})

# Second-generation cards (from 2004) were issued to the living: nobody born before 1900.
EARLIEST_BIRTH_YEAR = 1900


class IdNumberError(ValueError):
    """A claimed ID number that cannot be right; ``code`` is a WarningCode."""

    def __init__(self, code: WarningCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def normalize(number: str) -> str:
    return ric.compact(number)


def check(number: str) -> str:
    """Return the compact number or raise IdNumberError saying precisely what is wrong."""
    if not number.isascii():
        number = number.translate(_FULL_WIDTH)
    # The common case (18 plain characters) skips stdnum's per-character clean-up.
    compact = number.upper() if len(number) == 18 and number.isalnum() else normalize(number)
    if not compact.isascii():  # str.isdigit() also takes other scripts' digits, which int() reads
        raise IdNumberError(WarningCode.ID_FORMAT_INVALID, "contains characters other than digits and X")
    if len(compact) != 18 or not compact[:17].isdigit() or not (compact[17].isdigit() or compact[17] == "X"):
        raise IdNumberError(WarningCode.ID_FORMAT_INVALID, "must be 17 digits followed by a digit or X")
    try:
        birth = dt.date(int(compact[6:10]), int(compact[10:12]), int(compact[12:14]))  # = ric.get_birth_date
    except ValueError as exc:
        raise IdNumberError(WarningCode.ID_BIRTHDATE_INVALID, "birth date digits are not a date") from exc
    if ric.calc_check_digit(compact) != compact[17]:
        raise IdNumberError(WarningCode.ID_CHECKSUM_INVALID, "check character does not match")
    if birth > dt.datetime.now(dt.UTC).date():
        raise IdNumberError(WarningCode.ID_BIRTHDATE_INVALID, "birth date is in the future")
    if birth.year < EARLIEST_BIRTH_YEAR:
        raise IdNumberError(WarningCode.ID_BIRTHDATE_INVALID, f"birth date is before {EARLIEST_BIRTH_YEAR}")
    if not _place_known(compact[:6], compact[6:10]):
        raise IdNumberError(WarningCode.ID_REGION_UNKNOWN, "address code unknown for the birth year")
    return compact


_regions_lock = threading.Lock()
_regions_loaded = False


def _load_regions() -> None:
    """Parse stdnum's region database once per process, not once per thread.

    stdnum loads it on first use without a lock, so the 24 threads of a fresh worker
    each parsed the whole file at once (~1.3 s of CPU per worker process in the profile).
    """
    global _regions_loaded
    if _regions_loaded:
        return
    with _regions_lock:
        if not _regions_loaded:
            numdb.get("cn/loc")
            _regions_loaded = True


@lru_cache(maxsize=65536)
def _place_known(region: str, year: str) -> bool:
    """stdnum's region-by-year lookup, cached: it costs ~20 µs and ingest checks every row."""
    _load_regions()
    try:
        ric.get_birth_place(f"{region}{year}0101" + "0000")
    except stdnum_exc.ValidationError:
        return False
    return True


def sex_of(number: str) -> str:
    """'男' for an odd sequence digit, '女' for an even one."""
    return "男" if int(normalize(number)[16]) % 2 == 1 else "女"


_SEX_ALIASES = {"男": "男", "M": "男", "MALE": "男", "女": "女", "F": "女", "FEMALE": "女"}


def normalize_sex(value: str | None) -> str | None:
    if not value:
        return None
    return _SEX_ALIASES.get(value.strip().upper())


def local_warnings(id_number: str | None, sex: str | None, birth: dt.date | None) -> list[Warn]:
    """Warnings from checking a *recognized* ID number against itself and the card."""
    if not id_number:
        return []
    try:
        compact = check(id_number)
    except IdNumberError as exc:
        return [Warn(exc.code, WarningSource.LOCAL, detail=str(exc))]
    warns: list[Warn] = []
    norm_sex = normalize_sex(sex)
    if norm_sex is not None and norm_sex != sex_of(compact):
        warns.append(
            Warn(
                WarningCode.SEX_MISMATCH_ID,
                WarningSource.LOCAL,
                detail="printed sex disagrees with the sequence digit",
            )
        )
    if birth is not None and birth != ric.get_birth_date(compact):
        warns.append(
            Warn(
                WarningCode.BIRTH_MISMATCH_ID,
                WarningSource.LOCAL,
                detail="printed birth date disagrees with the number",
            )
        )
    return warns
