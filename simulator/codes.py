"""Every documented error code of every seed, as the simulator can answer it on demand.

The lists are copied from the seed documents (named per list) and from PROVIDERS.md (the
Tencent common codes and the Aliyun gateway messages), not from the product's adapters:
the simulator is a third party and must not learn the codes from the client it tests.
``NATURAL`` says which codes a request also reaches without a knob (an undecodable image,
an unknown identity, ...); every code is reachable with a fault knob (``simulator.state``):
``{"codes": {"faceid:FailedOperation.CompareFail": {"rate": 0.1}}}`` or
``{"next": {"ocr:IdCardTooSmall": 3}}``. ``resolve`` turns a knob's key into one entry.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOLS = ("faceid", "ocr", "aliyun", "aliyun-gateway", "acedata")


@dataclass(frozen=True)
class Code:
    """One documented answer: where it comes from and what goes on the wire."""

    protocol: str
    code: str  # Tencent Error.Code; Aliyun HTTP status; gateway message; AceData error.code
    message: str
    status: int = 200  # HTTP status on the wire
    source: str = ""  # the seed file or document that lists it

    @property
    def key(self) -> str:
        return f"{self.protocol}:{self.code}"


SEED_FACEID = "002_ (FaceID CheckIdCardInformation)"
SEED_OCR = "003_ (OCR IDCardOCR)"
SEED_ALIYUN = "004_ (Aliyun marketplace)"
SEED_ACEDATA = "000_/001_ (AceData check-1e)"
COMMON = "PROVIDERS.md (Tencent common errors)"
GATEWAY = "PROVIDERS.md (Aliyun API gateway)"

_FACEID = """\
FailedOperation.CompareFail|Comparison failed.
FailedOperation.CompareLowSimilarity|The comparison similarity did not reach the passing standard.
FailedOperation.CompareSystemError|Error calling the comparison engine API.
FailedOperation.DownLoadError|File download failed.
FailedOperation.EmptyImageError|Image content is empty.
FailedOperation.EncryptSystemError|Encryption failed.
FailedOperation.FileSaveError|Failed to store file. Please retry later.
FailedOperation.IdFormatError|Input identity card number error.
FailedOperation.IdNameMisMatch|Name and ID card number mismatch. Please verify and try again after.
FailedOperation.IdNoExistSystem|The number is not found in the database.
FailedOperation.IdPhotoNoExist|The photo of this number is not found in the database.
FailedOperation.IdPhotoPoorQuality|Document image is of poor quality. Please update and try again.
FailedOperation.IdPhotoSystemNoanswer|The authentication center failed to return the photo. Try again later.
FailedOperation.ImageBlur|The image is blurry.
FailedOperation.ImageDecodeFailed|Image decoding failed.
FailedOperation.ImageNoIdCard|No ID card is detected in the image.
FailedOperation.ImageSizeTooLarge|The image is too large.
FailedOperation.LifePhotoDetectFaces|Multiple faces are detected.
FailedOperation.LifePhotoDetectFake|Real person comparison failed.
FailedOperation.LifePhotoDetectNoFaces|Failed to detect a full face.
FailedOperation.LifePhotoPoorQuality|The resolution of the image passed in is too low.
FailedOperation.LifePhotoSizeError|The image passed in is too large or too small.
FailedOperation.OcrFailed|Ocr recognition failed.
FailedOperation.RequestLimitExceeded|The number of calls exceeded the limit.
FailedOperation.StsUnAuthErrError|STS unauthorized.
FailedOperation.UnKnown|Unknown internal error.
InternalError.EncryptSystemError|Encryption failed.
InternalError.UnKnown|Unknown internal error.
InvalidParameter|Invalid parameter.
UnauthorizedOperation.Arrears|The account is in arrears.
UnauthorizedOperation.ChargeStatusException|The billing status is abnormal.
UnauthorizedOperation.Nonactivated|The service has not been activated."""

_OCR = """\
FailedOperation.CardSideError|The CardSide type of the ID card is incorrect.
FailedOperation.DownLoadError|File download failed.
FailedOperation.EmptyImageError|The image is empty.
FailedOperation.IdCardInfoIllegal|The ID card information (ID number, name, etc.) is invalid.
FailedOperation.IdCardTooSmall|The resolution of the image is too low or the card is too small in it.
FailedOperation.ImageBlur|The image is blurry.
FailedOperation.ImageDecodeFailed|Image decoding failed.
FailedOperation.ImageNoIdCard|No ID card is detected in the image.
FailedOperation.ImageSizeTooLarge|The image is too large.
FailedOperation.MultiCardError|There are multiple cards in the photo.
FailedOperation.OcrFailed|OCR failed.
FailedOperation.UnKnowError|Unknown error.
FailedOperation.UnOpenError|The service is not activated.
InvalidParameter.ConfigFormatError|Config is not in valid JSON format.
InvalidParameterValue.InvalidParameterValueLimit|Incorrect parameter value.
LimitExceeded.TooLargeFileError|The file is too large.
ResourcesSoldOut.ChargeStatusException|Exceptional billing status."""

_COMMON = """\
AuthFailure.SignatureFailure|The request signature is incorrect.
AuthFailure.SignatureExpire|The signature has expired.
AuthFailure.SecretIdNotFound|The SecretId does not exist.
AuthFailure.InvalidSecretId|Invalid key (not a TencentCloud API key type).
AuthFailure.TokenFailure|Token error.
AuthFailure.InvalidAuthorization|The Authorization header is invalid.
AuthFailure.UnauthorizedOperation|The request is not authorized.
RequestLimitExceeded|Your request frequency exceeds the limit.
RequestLimitExceeded.UinLimitExceeded|The account's request frequency exceeds the limit.
RequestLimitExceeded.GlobalRegionUinLimitExceeded|The account's global request frequency exceeds the limit.
InternalError|Internal error.
InvalidParameter|Invalid parameter.
InvalidParameterValue|Invalid parameter value.
MissingParameter|A required parameter is missing.
LimitExceeded|Quota limit exceeded.
ResourceUnavailable.InArrears|The account is in arrears.
ResourceUnavailable.ResourcePackageRunOut|The resource package has run out.
UnauthorizedOperation|Unauthorized operation.
InvalidAction|The action does not exist.
NoSuchVersion|The API version does not exist.
UnsupportedOperation|Unsupported operation."""

# Seed 004_: status -> the documented messages (the first is what a bare status knob sends).
ALIYUN_MESSAGES: dict[int, tuple[str, ...]] = {
    400: ("Invalid URL",),
    403: ("Forbidden",),
    408: ("Request Timeout",),
    413: ("Payload Too Large",),
    450: ("",),
    460: ("Invalid Input - failed to parse json",),
    461: tuple(
        "Invalid Input - json format error - " + m
        for m in (
            "missing key: image",
            "image format error",
            "key inputs missing",
            "value of inputs must be a array",
            "image DataValue format error",
            "configure format error",
            "failed to parse config str: xxx",
            "json parse runtime exception",
        )
    ),
    462: tuple(
        "Invalid Input - image data error - " + m
        for m in (
            "download image from url error",
            "input image empty, please check your image binary data",
            "image decode failed, please check your image binary data",
            "base64decode error, please check your image binary data",
            "please remove additional header: data:image/jpg:base64,",
            "base64decode error: incorrect padding in base64 string",
            "base64decode error: base64decode error: incorrect base64 format data",
            "open gif image failed",
            "read gif image failed",
            "decode gif image failed",
            "gif data error, no color map got",
            "gif image empty",
        )
    ),
    463: ("Invalid Input - wrong category",),
    464: (
        "Invalid Result - algorithm run failed",
        "Invalid Result - algorithm runtime exception",
        "Invalid Result - xxx",
    ),
    469: ("Invalid Service - parse result error", "Invalid Service - error code missing"),
    502: ("Bad Gateway",),
    503: ("Service Unavailable",),
}

# PROVIDERS.md: Aliyun API gateway answers (X-Ca-Error-Message) -> (status, X-Ca-Error-Code).
# The six-character codes are illustrative: clients classify by message.
GATEWAY_ANSWERS: dict[str, tuple[int, str]] = {
    "Throttled by APP Flow Control": (403, "A403AF"),
    "Throttled by API Flow Control": (403, "A403PF"),
    "Throttled by USER Flow Control": (403, "A403UF"),
    "Throttled by DOMAIN Flow Control": (403, "A403DF"),
    "Quota Exhausted": (403, "A403QE"),
    "Quota Expired": (403, "A403QD"),
    "User Arrears": (403, "A403UA"),
    "Unauthorized": (403, "A403UN"),
    "Invalid AppCode `not exists`": (403, "I403IC"),
    "Internal Error": (500, "X500ER"),
    "Failed To Invoke Backend Service": (500, "D500FI"),
    "Service Unavailable": (503, "X503SU"),
    "Backend Service Timeout": (504, "D504TO"),
}

ACEDATA_ERRORS: dict[str, tuple[int, str]] = {
    "token_mismatched": (400, "Bad request, possibly due to missing or invalid parameters."),
    "api_not_implemented": (400, "Bad request, possibly due to missing or invalid parameters."),
    "invalid_token": (401, "Unauthorized, invalid or missing authorization token."),
    "too_many_requests": (429, "Too many requests, you have exceeded the rate limit."),
    "api_error": (500, "Internal server error, something went wrong on the server."),
}


def _table(protocol: str, text: str, source: str) -> list[Code]:
    rows = (line.split("|", 1) for line in text.splitlines())
    return [Code(protocol, code, message, source=source) for code, message in rows]


FACEID_CODES = _table("faceid", _FACEID, SEED_FACEID)
OCR_CODES = _table("ocr", _OCR, SEED_OCR)
COMMON_CODES = _table("tencent", _COMMON, COMMON)
ALIYUN_CODES = [Code("aliyun", str(s), m[0], s, SEED_ALIYUN) for s, m in ALIYUN_MESSAGES.items()]
GATEWAY_CODES = [Code("aliyun-gateway", m, m, s, GATEWAY) for m, (s, _) in GATEWAY_ANSWERS.items()]
ACEDATA_CODES = [Code("acedata", c, m, s, SEED_ACEDATA) for c, (s, m) in ACEDATA_ERRORS.items()]

# What a request reaches without any knob (the docs table shows these as "natural").
NATURAL: dict[str, str] = {
    "faceid:FailedOperation.CompareLowSimilarity": "identity enrolled with another portrait",
    "faceid:FailedOperation.DownLoadError": "an ImageUrl that cannot be fetched",
    "faceid:FailedOperation.EmptyImageError": "an ImageUrl that serves zero bytes",
    "faceid:FailedOperation.IdNameMisMatch": "identity enrolled under another name",
    "faceid:FailedOperation.IdNoExistSystem": "identity not enrolled",
    "faceid:FailedOperation.ImageBlur": "a blurred card, Quality not configured",
    "faceid:FailedOperation.ImageDecodeFailed": "bytes that are not an image",
    "faceid:FailedOperation.ImageNoIdCard": "an image that is not a card's front",
    "faceid:FailedOperation.ImageSizeTooLarge": "ImageBase64 over 7 MB",
    "faceid:InvalidParameter": "no image, or a body or Config that is not JSON",
    "faceid:UnauthorizedOperation.Arrears": "`arrears` knob",
    "ocr:FailedOperation.CardSideError": "a back sent as FRONT, or a reversed card",
    "ocr:FailedOperation.DownLoadError": "an ImageUrl that cannot be fetched",
    "ocr:FailedOperation.EmptyImageError": "an ImageUrl that serves zero bytes",
    "ocr:FailedOperation.ImageBlur": "a blurred card, Quality not configured",
    "ocr:FailedOperation.ImageDecodeFailed": "bytes that are not an image",
    "ocr:FailedOperation.ImageNoIdCard": "an image that is not a card",
    "ocr:FailedOperation.ImageSizeTooLarge": "ImageBase64 over 7 MB",
    "ocr:InvalidParameter.ConfigFormatError": "a Config that is not a JSON object",
    "ocr:InvalidParameterValue.InvalidParameterValueLimit": "a CardSide other than FRONT/BACK",
    "tencent:AuthFailure.SignatureFailure": "a wrong SecretKey, tampered body or wrong scope",
    "tencent:AuthFailure.SignatureExpire": "X-TC-Timestamp more than 300 s off",
    "tencent:AuthFailure.SecretIdNotFound": "an unknown SecretId",
    "tencent:AuthFailure.InvalidAuthorization": "a missing or malformed Authorization",
    "tencent:RequestLimitExceeded": "over the account's rate (FaceID 100/s, OCR 20/s)",
    "tencent:ResourceUnavailable.InArrears": "`arrears` knob (OCR)",
    "tencent:InvalidAction": "an X-TC-Action the product does not serve",
    "tencent:NoSuchVersion": "an X-TC-Version other than the documented one",
    "tencent:UnsupportedOperation": "IsEncrypt, IsEncryptResponse or Encryption (FaceID)",
    "aliyun:403": "",
    "aliyun:408": "`rate_timeout` knob",
    "aliyun:413": "an image over 4 MB after base64 and urlencode",
    "aliyun:450": "`rate_450` knob",
    "aliyun:460": "a body that is not JSON (a form, say)",
    "aliyun:461": "no `image`, a non-string `image`, or a bad `id_card_side`",
    "aliyun:462": "an unfetchable URL, bad base64, a data: header, not an image",
    "aliyun:502": "`rate_5xx` knob",
    "aliyun-gateway:Throttled by APP Flow Control": "over the account's rate, or `rate_429`",
    "aliyun-gateway:User Arrears": "`arrears` knob",
    "aliyun-gateway:Invalid AppCode `not exists`": "a missing or unknown APPCODE",
    "aliyun-gateway:Backend Service Timeout": "`outage_s` knob",
    "acedata:token_mismatched": "a body that is not JSON or lacks image_url; `arrears` knob",
    "acedata:api_not_implemented": "a path under /identity/ other than check-1e",
    "acedata:invalid_token": "a missing or unknown Bearer token",
    "acedata:too_many_requests": "over the account's rate, or `rate_429`",
    "acedata:api_error": "`rate_5xx` or `outage_s` knob",
}
NATURAL = {k: v for k, v in NATURAL.items() if v}

CATALOG: dict[str, list[Code]] = {
    "faceid": FACEID_CODES,
    "ocr": OCR_CODES,
    "tencent": COMMON_CODES,
    "aliyun": ALIYUN_CODES,
    "aliyun-gateway": GATEWAY_CODES,
    "acedata": ACEDATA_CODES,
}


def resolve(key: str) -> tuple[str, Code]:
    """``"faceid:CompareFail"`` -> ``("faceid", Code(FailedOperation.CompareFail))``.

    The protocol is the product asked (``faceid``/``ocr`` for Tencent, whose common codes
    any product may answer; ``acedata`` may also relay any FaceID code in ``result``). A
    code may be given in full or by its last dotted part when that is unambiguous.
    """
    protocol, sep, name = key.partition(":")
    if not sep or protocol not in PROTOCOLS:
        raise KeyError(f"{key}: start with one of {', '.join(PROTOCOLS)} and a colon")
    pools = {
        "faceid": FACEID_CODES + COMMON_CODES,
        "ocr": OCR_CODES + COMMON_CODES,
        "acedata": ACEDATA_CODES + FACEID_CODES,
    }.get(protocol, CATALOG[protocol])
    exact = [c for c in pools if c.code == name]
    found = exact or [c for c in pools if c.code.rsplit(".", 1)[-1] == name]
    if len({c.code for c in found}) != 1:
        raise KeyError(f"{key}: {'ambiguous' if found else 'not a documented code'}")
    return protocol, found[0]
