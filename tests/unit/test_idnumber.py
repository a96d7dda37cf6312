"""Local ID-number checks: python-stdnum does the work, we report precisely."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from idbatch.domain import WarningCode
from idbatch.idnumber import IdNumberError, check, local_warnings, sex_of
from simulator.cards import make_id_number


def test_generated_numbers_pass_every_check() -> None:
    rng = random.Random(3)
    for _ in range(200):
        birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 55))
        male = rng.random() < 0.5
        number = make_id_number(rng, birth, male)
        assert check(number) == number
        assert sex_of(number) == ("男" if male else "女")


def test_seed_sample_number_fails_its_checksum() -> None:
    # The FaceID seed's own example (PROVIDERS.md notes it is not valid).
    with pytest.raises(IdNumberError) as err:
        check("11204416541220243X")
    assert err.value.code in {WarningCode.ID_CHECKSUM_INVALID, WarningCode.ID_REGION_UNKNOWN}


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("11010519491231002", WarningCode.ID_FORMAT_INVALID),  # 17 characters
        ("1101051949123100AX", WarningCode.ID_FORMAT_INVALID),
        ("110105194913310021", WarningCode.ID_BIRTHDATE_INVALID),  # month 13
        ("110105194912310022", WarningCode.ID_CHECKSUM_INVALID),
    ],
)
def test_each_defect_is_named(number: str, code: WarningCode) -> None:
    with pytest.raises(IdNumberError) as err:
        check(number)
    assert err.value.code == code


def test_unknown_region_for_birth_year_is_reported() -> None:
    body = "44030519500101001"  # Nanshan district did not exist in 1950
    from stdnum.cn import ric

    number = body + ric.calc_check_digit(body + "0")
    with pytest.raises(IdNumberError) as err:
        check(number)
    assert err.value.code == WarningCode.ID_REGION_UNKNOWN


def test_printed_sex_and_birth_are_cross_checked() -> None:
    number = make_id_number(random.Random(1), dt.date(1980, 5, 17), male=True)
    assert local_warnings(number, "男", dt.date(1980, 5, 17)) == []
    codes = {w.code for w in local_warnings(number, "女", dt.date(1980, 5, 18))}
    assert codes == {WarningCode.SEX_MISMATCH_ID, WarningCode.BIRTH_MISMATCH_ID}


def test_full_width_digits_and_x_read_as_ascii_and_other_scripts_digits_are_named() -> None:
    rng = random.Random(11)
    number = make_id_number(rng, dt.date(1980, 5, 17), True)
    full_width = "".join(chr(0xFF10 + int(c)) if c.isdigit() else "\uff38" for c in number)
    assert check(full_width) == number  # what a CJK input method types is the same number
    arabic_indic = "".join(chr(0x0660 + int(c)) if c.isdigit() else c for c in number)
    with pytest.raises(IdNumberError) as err:
        check(arabic_indic)  # str.isdigit() is true for these, int() reads them: still not an ID number
    assert err.value.code == WarningCode.ID_FORMAT_INVALID
    assert "other than digits" in str(err.value)
