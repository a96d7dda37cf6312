"""Tencent's codes shared by every adapter that speaks them: the Cloud API 3.0 common
errors (FaceID and OCR), FaceID's business codes and the card-warning codes (Tencent
FaceID itself, Tencent OCR, and AceData check-1e which relays FaceID's answers).

A business code is either a *verification outcome* (the provider answered about this
identity: negative verdict + a normalized warning) or an *error class*. Keeping both in
one table means a test can walk every documented code and check it is classified.
"""

from __future__ import annotations

from typing import Any

from idbatch.domain import NormalizedResult, Verdict, Warn, WarningCode, WarningSource
from idbatch.idnumber import normalize_sex
from idbatch.providers import errors
from idbatch.providers.parse import parse_date

# Result codes that are answers about the card or the identity (billable, terminal).
FACEID_OUTCOMES: dict[str, WarningCode | None] = {
    "Success": None,
    "FailedOperation.OcrWarningOccurred": None,  # warnings listed in the Warnings field
    "FailedOperation.CompareLowSimilarity": WarningCode.LOW_SIMILARITY,
    "FailedOperation.IdNameMisMatch": WarningCode.NAME_ID_MISMATCH,
    "FailedOperation.IdNoExistSystem": WarningCode.ID_NOT_IN_REGISTRY,
    "FailedOperation.IdPhotoNoExist": WarningCode.NO_REGISTRY_PHOTO,
    "FailedOperation.IdFormatError": WarningCode.ID_FORMAT_INVALID,
    "FailedOperation.ImageNoIdCard": WarningCode.NOT_ID_CARD,
    "FailedOperation.ImageBlur": WarningCode.LOW_QUALITY,
    "FailedOperation.IdPhotoPoorQuality": WarningCode.LOW_QUALITY,
    "FailedOperation.OcrFailed": WarningCode.OCR_FAILED,
}

# Result codes that are errors, by class.
FACEID_ERRORS: dict[str, type[errors.ProviderError]] = {
    "FailedOperation.CompareFail": errors.Unavailable,
    "FailedOperation.CompareSystemError": errors.Unavailable,
    "FailedOperation.IdPhotoSystemNoanswer": errors.Unavailable,
    "FailedOperation.FileSaveError": errors.Unavailable,
    "FailedOperation.DownLoadError": errors.Unavailable,
    "FailedOperation.EncryptSystemError": errors.Unavailable,
    "FailedOperation.UnKnown": errors.Unavailable,
    "InternalError.EncryptSystemError": errors.Unavailable,
    "InternalError.UnKnown": errors.Unavailable,
    "FailedOperation.RequestLimitExceeded": errors.RateLimited,
    "FailedOperation.EmptyImageError": errors.ItemRejected,
    "FailedOperation.ImageDecodeFailed": errors.ItemRejected,
    "FailedOperation.ImageSizeTooLarge": errors.ItemRejected,
    "FailedOperation.LifePhotoDetectFaces": errors.ItemRejected,
    "FailedOperation.LifePhotoDetectFake": errors.ItemRejected,
    "FailedOperation.LifePhotoDetectNoFaces": errors.ItemRejected,
    "FailedOperation.LifePhotoPoorQuality": errors.ItemRejected,
    "FailedOperation.LifePhotoSizeError": errors.ItemRejected,
    "InvalidParameter": errors.ItemRejected,
    "FailedOperation.StsUnAuthErrError": errors.AccountBlocked,
    "UnauthorizedOperation.Arrears": errors.AccountBlocked,
    "UnauthorizedOperation.ChargeStatusException": errors.AccountBlocked,
    "UnauthorizedOperation.Nonactivated": errors.AccountBlocked,
}

# Cloud API 3.0 common errors (PROVIDERS.md), for both FaceID and OCR. ``X.*`` rows are
# wildcards for a whole family (``idbatch.providers.common.lookup``). Auth failures,
# arrears, exhausted packages and a wrong action/version are the account's or the
# configuration's problem: stop sending, keep the jobs. A stale timestamp cannot be the
# item's fault either, since we sign afresh on every attempt: it means our clock is off.
TENCENT_COMMON_ERRORS: dict[str, type[errors.ProviderError]] = {
    "AuthFailure.*": errors.AccountBlocked,
    "AuthFailure.SignatureFailure": errors.AccountBlocked,
    "AuthFailure.SignatureExpire": errors.AccountBlocked,
    "AuthFailure.SecretIdNotFound": errors.AccountBlocked,
    "AuthFailure.InvalidSecretId": errors.AccountBlocked,
    "AuthFailure.InvalidAuthorization": errors.AccountBlocked,
    "AuthFailure.TokenFailure": errors.AccountBlocked,
    "AuthFailure.MFAFailure": errors.AccountBlocked,
    "AuthFailure.UnauthorizedOperation": errors.AccountBlocked,
    "RequestLimitExceeded": errors.RateLimited,
    "RequestLimitExceeded.*": errors.RateLimited,
    "RequestLimitExceeded.UinLimitExceeded": errors.RateLimited,
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded": errors.RateLimited,
    "RequestLimitExceeded.IPLimitExceeded": errors.RateLimited,
    "InternalError": errors.Unavailable,
    "InternalError.*": errors.Unavailable,
    "ServiceUnavailable": errors.Unavailable,
    "ResourceInsufficient": errors.Unavailable,
    "InvalidParameter": errors.ItemRejected,
    "InvalidParameter.*": errors.ItemRejected,
    "InvalidParameterValue": errors.ItemRejected,
    "InvalidParameterValue.*": errors.ItemRejected,
    "MissingParameter": errors.ItemRejected,
    "UnknownParameter": errors.ItemRejected,
    "RequestSizeLimitExceeded": errors.ItemRejected,
    "UnsupportedOperation": errors.ItemRejected,
    "LimitExceeded": errors.AccountBlocked,  # "quota limit exceeded": an account quota
    "ResourceUnavailable.*": errors.AccountBlocked,
    "ResourceUnavailable.InArrears": errors.AccountBlocked,
    "ResourceUnavailable.ResourcePackageRunOut": errors.AccountBlocked,
    "UnauthorizedOperation": errors.AccountBlocked,
    "UnauthorizedOperation.*": errors.AccountBlocked,
    "InvalidAction": errors.AccountBlocked,
    "NoSuchVersion": errors.AccountBlocked,
    "ActionOffline": errors.AccountBlocked,
    "UnsupportedRegion": errors.AccountBlocked,
    "InvalidRegion": errors.AccountBlocked,
}

# A non-200 answer without a parseable ``Response.Error`` (a proxy or load balancer).
TENCENT_HTTP_ERRORS: dict[int, type[errors.ProviderError]] = {
    400: errors.ItemRejected,
    401: errors.AccountBlocked,
    403: errors.AccountBlocked,
    404: errors.AccountBlocked,  # wrong endpoint: configuration
    408: errors.Unavailable,
    413: errors.ItemRejected,
    429: errors.RateLimited,
}

# Card warning codes: the seed's list (-9100..-9107), the current list (-9101..-9111)
# and FaceID's blur code. -9100 is "invalid validity period" in the older list only.
CARD_WARNINGS: dict[str, WarningCode] = {
    "-9100": WarningCode.INVALID_VALIDITY,
    "-9101": WarningCode.BORDER_INCOMPLETE,
    "-9102": WarningCode.PHOTOCOPY,
    "-9103": WarningCode.SCREEN_RESHOOT,
    "-9104": WarningCode.TEMPORARY_ID,
    "-9105": WarningCode.BORDER_OCCLUDED,
    "-9106": WarningCode.PHOTOSHOPPED,
    "-9107": WarningCode.GLARE,
    "-9108": WarningCode.BW_COPY,
    "-9109": WarningCode.INVALID_VALIDITY,
    "-9110": WarningCode.ELECTRONIC_ID,
    "-9111": WarningCode.WATERMARK,
    "-8001": WarningCode.LOW_QUALITY,
}


def split_warning_codes(value: str | None) -> list[str]:
    """FaceID returns ``"-9101"`` or ``"-9101,-9102"`` (and ``""`` for none)."""
    if not value:
        return []
    return [part.strip() for part in str(value).replace("|", ",").split(",") if part.strip()]


def card_warns(codes: list[str]) -> list[Warn]:
    """Normalized warnings for provider warning codes; unknown codes are kept out."""
    warns: list[Warn] = []
    for code in codes:
        normalized = CARD_WARNINGS.get(code)
        if normalized is not None:
            warns.append(Warn(normalized, WarningSource.PROVIDER, provider_code=code))
    return warns


def to_float(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def faceid_result(
    result_code: str,
    *,
    fields: dict[str, Any],
    sim: Any,
    warnings: Any,
    quality: Any,
    description: Any,
    threshold: float,
    raw: dict[str, Any],
) -> NormalizedResult:
    """A FaceID-style answer (FaceID itself or AceData's relay) in our vocabulary.

    ``fields`` uses FaceID's names (Name, Sex, Nation, Birth, Address, IdNum).
    """
    warns: list[Warn] = []
    outcome_warning = FACEID_OUTCOMES[result_code]
    if outcome_warning is not None:
        warns.append(Warn(outcome_warning, WarningSource.PROVIDER, provider_code=result_code))
    warns += card_warns(split_warning_codes(warnings))
    similarity = to_float(sim)
    if result_code == "Success" and similarity is not None and similarity < threshold:
        warns.append(
            Warn(
                WarningCode.LOW_SIMILARITY,
                WarningSource.PROVIDER,
                provider_code="sim",
                detail=f"similarity {similarity:.2f} < {threshold:.0f}",
            )
        )
    verdict = Verdict.PASSED if result_code == "Success" and not warns else Verdict.NEGATIVE
    return NormalizedResult(
        verdict=verdict,
        name=fields.get("Name") or None,
        sex=normalize_sex(fields.get("Sex")),
        nation=fields.get("Nation") or None,
        birth=parse_date(fields.get("Birth")),
        address=fields.get("Address") or None,
        id_number=fields.get("IdNum") or None,
        similarity=similarity,
        quality=to_float(quality),
        description=str(description) if description else None,
        warnings=warns,
        raw=raw,
    )
