"""Tencent's FaceID business codes and card-warning codes, shared by every adapter that
speaks them (Tencent FaceID itself, and AceData check-1e which relays its answers).

A business code is either a *verification outcome* (the provider answered about this
identity: negative verdict + a normalized warning) or an *error class*. Keeping both in
one table means a test can walk every documented code and check it is classified.
"""

from __future__ import annotations

from idbatch.domain import WarningCode
from idbatch.providers import errors

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
