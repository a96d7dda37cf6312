"""The verdict rules: what makes a provider's answer ``passed`` or ``negative``.

A provider's own "passed" is necessary, not sufficient: our local checks of the ID
number, the card's validity and the claims made in the manifest can each turn it
negative, with a warning that says why. The rules run when a job finishes, for a fresh
answer and for a reused one alike: a card that expired since its answer was paid for,
or a claim that differs from the earlier job's, is judged today, against this job.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

from idbatch.domain import NormalizedResult, Verdict, Warn, WarningCode, WarningSource
from idbatch.idnumber import local_warnings, normalize


def judge(
    result: NormalizedResult, claimed_name: str | None, claimed_id: str | None, today: dt.date
) -> tuple[Verdict, list[Warn]]:
    warns = list(result.warnings)
    if not (result.name or result.id_number):
        # A 200 answer that read nothing (an empty ``words_result``, ``image_status:
        # unknown``) is not a verification: never ``passed``.
        warns.append(
            Warn(
                WarningCode.NOTHING_RECOGNIZED,
                WarningSource.LOCAL,
                detail="no name and no ID number recognized",
            )
        )
    warns += local_warnings(result.id_number, result.sex, result.birth)
    if result.valid_to is not None and result.valid_to < today:
        warns.append(Warn(WarningCode.EXPIRED, WarningSource.LOCAL, detail=f"valid to {result.valid_to}"))
    warns += claim_warnings(claimed_name, claimed_id, result)
    verdict = Verdict.PASSED if result.verdict == Verdict.PASSED and not warns else Verdict.NEGATIVE
    return verdict, warns


def _same_name(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        return "".join(unicodedata.normalize("NFKC", s).split())

    return norm(a) == norm(b)


def claim_warnings(claimed_name: str | None, claimed_id: str | None, result: NormalizedResult) -> list[Warn]:
    """Compare what the manifest claimed with what the provider read off the card."""
    warns: list[Warn] = []
    if claimed_name and result.name and not _same_name(claimed_name, result.name):
        warns.append(
            Warn(
                WarningCode.CLAIMED_NAME_MISMATCH,
                WarningSource.CLAIM,
                detail="claimed name differs from the recognized name",
            )
        )
    if claimed_id and result.id_number and normalize(claimed_id) != normalize(result.id_number):
        warns.append(
            Warn(
                WarningCode.CLAIMED_ID_MISMATCH,
                WarningSource.CLAIM,
                detail="claimed ID number differs from the recognized number",
            )
        )
    return warns
