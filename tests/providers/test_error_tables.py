"""Every documented error code of every seed is classified, in exactly one place per provider."""

from __future__ import annotations

import pytest

from idbatch.domain import WarningCode
from idbatch.providers import acedata, aliyun_market, errors, tencent_faceid, tencent_ocr
from idbatch.providers.common import lookup

Retryable, RateLimited, Unavailable = errors.Retryable, errors.RateLimited, errors.Unavailable
ItemRejected, AccountBlocked = errors.ItemRejected, errors.AccountBlocked

# PROVIDERS.md: Tencent Cloud API 3.0 common errors.
TENCENT_COMMON = {
    "AuthFailure.SignatureFailure": AccountBlocked,
    "AuthFailure.SignatureExpire": AccountBlocked,
    "AuthFailure.SecretIdNotFound": AccountBlocked,
    "AuthFailure.InvalidSecretId": AccountBlocked,
    "AuthFailure.TokenFailure": AccountBlocked,
    "AuthFailure.SomethingNew": AccountBlocked,  # the family wildcard
    "RequestLimitExceeded": RateLimited,
    "RequestLimitExceeded.UinLimitExceeded": RateLimited,
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded": RateLimited,
    "InternalError": Unavailable,
    "InvalidParameter": ItemRejected,
    "InvalidParameterValue": ItemRejected,
    "MissingParameter": ItemRejected,
    "LimitExceeded": AccountBlocked,
    "ResourceUnavailable.InArrears": AccountBlocked,
    "ResourceUnavailable.ResourcePackageRunOut": AccountBlocked,
    "UnauthorizedOperation.Anything": AccountBlocked,
}

# Seed 002_: FaceID CheckIdCardInformation error codes (outcome = a verification answer).
FACEID_SEED = {
    "FailedOperation.CompareFail": Unavailable,
    "FailedOperation.CompareLowSimilarity": "outcome",
    "FailedOperation.CompareSystemError": Unavailable,
    "FailedOperation.DownLoadError": Unavailable,
    "FailedOperation.EmptyImageError": ItemRejected,
    "FailedOperation.EncryptSystemError": Unavailable,
    "FailedOperation.FileSaveError": Unavailable,
    "FailedOperation.IdFormatError": "outcome",
    "FailedOperation.IdNameMisMatch": "outcome",
    "FailedOperation.IdNoExistSystem": "outcome",
    "FailedOperation.IdPhotoNoExist": "outcome",
    "FailedOperation.IdPhotoPoorQuality": "outcome",
    "FailedOperation.IdPhotoSystemNoanswer": Unavailable,
    "FailedOperation.ImageBlur": "outcome",
    "FailedOperation.ImageDecodeFailed": ItemRejected,
    "FailedOperation.ImageNoIdCard": "outcome",
    "FailedOperation.ImageSizeTooLarge": ItemRejected,
    "FailedOperation.LifePhotoDetectFaces": ItemRejected,
    "FailedOperation.LifePhotoDetectFake": ItemRejected,
    "FailedOperation.LifePhotoDetectNoFaces": ItemRejected,
    "FailedOperation.LifePhotoPoorQuality": ItemRejected,
    "FailedOperation.LifePhotoSizeError": ItemRejected,
    "FailedOperation.OcrFailed": "outcome",
    "FailedOperation.OcrWarningOccurred": "outcome",
    "FailedOperation.RequestLimitExceeded": RateLimited,
    "FailedOperation.StsUnAuthErrError": AccountBlocked,
    "FailedOperation.UnKnown": Unavailable,
    "InternalError.EncryptSystemError": Unavailable,
    "InternalError.UnKnown": Unavailable,
    "InvalidParameter": ItemRejected,
    "UnauthorizedOperation.Arrears": AccountBlocked,
    "UnauthorizedOperation.ChargeStatusException": AccountBlocked,
    "UnauthorizedOperation.Nonactivated": AccountBlocked,
}

# Seed 003_: IDCardOCR error codes.
OCR_SEED = {
    "FailedOperation.CardSideError": WarningCode.REVERSED_SIDE,
    "FailedOperation.DownLoadError": Unavailable,
    "FailedOperation.EmptyImageError": ItemRejected,
    "FailedOperation.IdCardInfoIllegal": WarningCode.ID_FORMAT_INVALID,
    "FailedOperation.IdCardTooSmall": ItemRejected,
    "FailedOperation.ImageBlur": WarningCode.LOW_QUALITY,
    "FailedOperation.ImageDecodeFailed": ItemRejected,
    "FailedOperation.ImageNoIdCard": WarningCode.NOT_ID_CARD,
    "FailedOperation.ImageSizeTooLarge": ItemRejected,
    "FailedOperation.MultiCardError": WarningCode.MULTI_CARD,
    "FailedOperation.OcrFailed": WarningCode.OCR_FAILED,
    "FailedOperation.UnKnowError": Unavailable,
    "FailedOperation.UnOpenError": AccountBlocked,
    "InvalidParameter.ConfigFormatError": ItemRejected,
    "InvalidParameterValue.InvalidParameterValueLimit": ItemRejected,
    "LimitExceeded.TooLargeFileError": ItemRejected,
    "ResourcesSoldOut.ChargeStatusException": AccountBlocked,
}

# Seed 004_: the vendor's status codes (with the message variants that change the class).
ALIYUN_VENDOR_SEED = [
    (400, "Invalid URL", AccountBlocked),
    (403, "Forbidden", AccountBlocked),
    (408, "Request Timeout", Unavailable),
    (413, "Payload Too Large", ItemRejected),
    (450, "", RateLimited),
    (460, "Invalid Input - failed to parse json", ItemRejected),
    (461, "Invalid Input - json format error - missing key: image", ItemRejected),
    (461, "Invalid Input - json format error - failed to parse config str: x", ItemRejected),
    (462, "Invalid Input - image data error - download image from url error", Unavailable),
    (462, "Invalid Input - image data error - image decode failed, please check", ItemRejected),
    (462, "Invalid Input - image data error - gif image empty", ItemRejected),
    (463, "Invalid Input - wrong category", WarningCode.NOT_ID_CARD),
    (464, "Invalid Result - algorithm run failed", WarningCode.OCR_FAILED),
    (464, "Invalid Result - algorithm runtime exception", Unavailable),
    (469, "Invalid Service - parse result error", Unavailable),
    (469, "Invalid Service - error code missing", Unavailable),
    (502, "Bad Gateway", Unavailable),
    (503, "Service Unavailable", Unavailable),
]

# PROVIDERS.md: gateway messages (X-Ca-Error-Message).
ALIYUN_GATEWAY = [
    (403, "Throttled by APP Flow Control", RateLimited),
    (403, "Throttled by API Flow Control", RateLimited),
    (403, "Throttled by USER Flow Control", RateLimited),
    (403, "Throttled by DOMAIN Flow Control", RateLimited),
    (403, "Quota Exhausted", AccountBlocked),
    (403, "Quota Expired", AccountBlocked),
    (403, "User Arrears", AccountBlocked),
    (403, "Unauthorized", AccountBlocked),
    (403, "Invalid AppCode `not exists`", AccountBlocked),
    (500, "Internal Error", Unavailable),
    (500, "Failed To Invoke Backend Service", Unavailable),
    (503, "Service Unavailable", Unavailable),
    (504, "Backend Service Timeout", Unavailable),
    (403, "Some new 403", AccountBlocked),
]

ACEDATA_SEED = [
    (400, "token_mismatched", AccountBlocked),
    (400, "api_not_implemented", AccountBlocked),
    (401, "invalid_token", AccountBlocked),
    (429, "too_many_requests", RateLimited),
    (500, "api_error", Unavailable),
]


@pytest.mark.parametrize(("code", "cls"), sorted(TENCENT_COMMON.items()))
@pytest.mark.parametrize("module", [tencent_faceid, tencent_ocr], ids=["faceid", "ocr"])
def test_tencent_common_errors(module: object, code: str, cls: type[errors.ProviderError]) -> None:
    assert lookup(module.ERRORS, code) is cls  # type: ignore[attr-defined]


@pytest.mark.parametrize(("code", "expected"), sorted(FACEID_SEED.items()))
def test_faceid_seed_codes(code: str, expected: object) -> None:
    if expected == "outcome":
        assert code in tencent_faceid.OUTCOMES
        assert code not in tencent_faceid.ERRORS
    else:
        assert code not in tencent_faceid.OUTCOMES
        assert tencent_faceid.ERRORS[code] is expected  # exact row, not a fallback


@pytest.mark.parametrize(("code", "expected"), sorted(OCR_SEED.items()))
def test_ocr_seed_codes(code: str, expected: object) -> None:
    if isinstance(expected, WarningCode):
        assert tencent_ocr.OUTCOMES[code] is expected
        assert code not in tencent_ocr.ERRORS
    else:
        assert code not in tencent_ocr.OUTCOMES
        assert tencent_ocr.ERRORS[code] is expected


@pytest.mark.parametrize(("status", "message", "expected"), ALIYUN_VENDOR_SEED)
def test_aliyun_vendor_codes(status: int, message: str, expected: object) -> None:
    assert aliyun_market.classify_vendor(status, message) is expected
    assert (status, None) in aliyun_market.VENDOR_ERRORS  # every documented status has a row


@pytest.mark.parametrize(("status", "message", "expected"), ALIYUN_GATEWAY)
def test_aliyun_gateway_messages(status: int, message: str, expected: object) -> None:
    assert aliyun_market.classify_gateway(status, message) is expected


@pytest.mark.parametrize(("status", "code", "expected"), ACEDATA_SEED)
def test_acedata_codes(status: int, code: str, expected: object) -> None:
    assert acedata.classify_http_error(status, code) is expected


def test_an_undocumented_tencent_code_is_retried_not_guessed() -> None:
    assert lookup(tencent_ocr.ERRORS, "FailedOperation.BrandNew") is Unavailable


def test_every_class_is_one_of_ours() -> None:
    tables = [tencent_faceid.ERRORS, tencent_ocr.ERRORS, aliyun_market.GATEWAY_ERRORS]
    for table in tables:
        for cls in table.values():
            assert issubclass(cls, (Retryable, ItemRejected, AccountBlocked))
