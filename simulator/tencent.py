"""Tencent Cloud API 3.0: FaceID ``CheckIdCardInformation`` and OCR ``IDCardOCR``.

Real Tencent serves each product at ``/`` on its own host (``faceid.tencentcloudapi.com``,
``ocr.tencentcloudapi.com``). The simulator has one host and serves ``POST /`` routed the
way a client pointed at it by endpoint alone (the official SDK with
``HttpProfile(endpoint="127.0.0.1:PORT")``) lets it: by the ``Host`` header's first label
when it names a product (``faceid.*``/``ocr.*``), else by ``X-TC-Action``
(``CheckIdCardInformation``/``IDCardOCR``), else by the credential scope's service.
``POST /tencent/faceid/`` and ``POST /tencent/ocr/`` stay as aliases. Either way the
signature is checked exactly as the SDK makes it: canonical URI ``/`` and the ``Host``
header as received.

Checks, in the order the real service applies them (errors are HTTP 200 with
``Response.Error.{Code,Message}`` and a ``RequestId``)::

    X-TC-Action not this product's          InvalidAction
    X-TC-Version not the documented one     NoSuchVersion
    Authorization missing/malformed         AuthFailure.InvalidAuthorization
    SecretId unknown                        AuthFailure.SecretIdNotFound
    X-TC-Timestamp more than 300 s off      AuthFailure.SignatureExpire
    signature / scope / signed headers bad  AuthFailure.SignatureFailure
    over the per-account rate               RequestLimitExceeded
    account in arrears (Faults.arrears)     FaceID UnauthorizedOperation.Arrears,
                                            OCR ResourceUnavailable.InArrears
    a code knob (Faults.codes / .next)      that documented code (simulator.codes)

Accounts are ``faceid:<SecretId>`` and ``ocr:<SecretId>`` (rates 100/s and 20/s by
default); ``tencent:<SecretId>`` in ``arrears`` covers both products. Encrypted modes
(FaceID ``IsEncrypt``, ``IsEncryptResponse``, ``Encryption``) are not simulated and are
refused with ``UnsupportedOperation`` naming them, never silently answered in clear.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from simulator import tc3_verify
from simulator.fetch import DownloadError, download
from simulator.identity import faceid_answer, item_key, look_at
from simulator.state import CodeFault, SimState
from simulator.tencent_answers import EXTRA_FIELD, advanced_info, faceid_fields, ocr_fields
from simulator.wire import drop_connection, hang

FACEID_PREFIX = "/tencent/faceid"
OCR_PREFIX = "/tencent/ocr"
MAX_BASE64_BYTES = 7 * 1024 * 1024
DEFAULT_SECRETS = {"sim-tencent-secret-id": "sim-tencent-secret-key"}


@dataclass(frozen=True)
class Product:
    protocol: str  # also the TC3 service name and the quota key
    action: str
    version: str
    arrears_code: str


FACEID = Product("faceid", "CheckIdCardInformation", "2018-03-01", "UnauthorizedOperation.Arrears")
OCR = Product("ocr", "IDCardOCR", "2018-11-19", "ResourceUnavailable.InArrears")
PRODUCTS = {p.protocol: p for p in (FACEID, OCR)}
BY_ACTION = {p.action: p for p in (FACEID, OCR)}
ENCRYPT_PARAMS = ("IsEncrypt", "IsEncryptResponse", "Encryption")


def _envelope(request_id: str, **fields: Any) -> JSONResponse:
    return JSONResponse({"Response": {**fields, "RequestId": request_id}})


def _error(request_id: str, code: str, message: str) -> JSONResponse:
    return _envelope(request_id, Error={"Code": code, "Message": message})


class TencentSim:
    def __init__(
        self,
        state: SimState,
        secrets: dict[str, str],
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.secrets = secrets
        self.http = http
        self.clock = clock

    async def faceid(self, request: Request) -> Response:
        return await self._handle(request, FACEID)

    async def ocr(self, request: Request) -> Response:
        return await self._handle(request, OCR)

    async def root(self, request: Request) -> Response:
        """``POST /``: the product by Host label, else X-TC-Action, else the credential scope."""
        headers = request.headers
        auth = tc3_verify.parse(headers.get("authorization", ""))
        product = (
            PRODUCTS.get(headers.get("host", "").split(".", 1)[0])
            or BY_ACTION.get(headers.get("x-tc-action", ""))
            or PRODUCTS.get(auth.service if auth is not None else "")
        )
        if product is None:
            await request.body()
            message = "X-TC-Action names no action served here (CheckIdCardInformation, IDCardOCR)."
            return _error(str(uuid.uuid4()), "InvalidAction", message)
        return await self._handle(request, product)

    def _authenticate(self, request: Request, body: bytes, product: Product) -> tuple[str | None, str]:
        """``(secret_id, "")`` when the request is properly signed, else ``(None, error code)``."""
        headers = request.headers
        if headers.get("x-tc-action") != product.action:
            return None, "InvalidAction"
        if headers.get("x-tc-version") != product.version:
            return None, "NoSuchVersion"
        auth = tc3_verify.parse(headers.get("authorization", ""))
        try:
            timestamp = int(headers.get("x-tc-timestamp", ""))
        except ValueError:
            return None, "AuthFailure.InvalidAuthorization"
        if auth is None:
            return None, "AuthFailure.InvalidAuthorization"
        secret_key = self.secrets.get(auth.secret_id)
        if secret_key is None:
            return None, "AuthFailure.SecretIdNotFound"
        if abs(self.clock() - timestamp) > tc3_verify.MAX_SKEW_S:
            return None, "AuthFailure.SignatureExpire"
        if (
            auth.service != product.protocol
            or auth.date != tc3_verify.scope_date(timestamp)
            or not {"content-type", "host"} <= set(auth.signed_headers)
        ):
            return None, "AuthFailure.SignatureFailure"
        # The SDK's profile.unsignedPayload signs the literal "UNSIGNED-PAYLOAD" instead.
        unsigned = headers.get("x-tc-content-sha256") == "UNSIGNED-PAYLOAD"
        expected = tc3_verify.expected_signature(
            auth,
            secret_key,
            method=request.method,
            query=request.url.query,
            headers=headers,
            body=b"UNSIGNED-PAYLOAD" if unsigned else body,
            timestamp=timestamp,
        )
        if not hmac.compare_digest(expected, auth.signature):
            return None, "AuthFailure.SignatureFailure"
        return auth.secret_id, ""

    async def _handle(self, request: Request, product: Product) -> Response:
        state = self.state
        request_id = str(uuid.uuid4())
        arrived = state.clock()  # the quota counts arrivals, before the body is read
        body = await request.body()
        secret_id, auth_error = self._authenticate(request, body, product)
        if secret_id is None:
            state.record(f"{product.protocol}:-", auth_error)
            return _error(request_id, auth_error, "The request could not be authenticated.")
        account = f"{product.protocol}:{secret_id}"
        if not state.admit(product.protocol, account, arrived):
            state.record(account, "RequestLimitExceeded")
            return _error(request_id, "RequestLimitExceeded", "Your request frequency exceeds the limit.")
        if {account, f"tencent:{secret_id}"} & state.faults.arrears:
            state.record(account, product.arrears_code)
            return _error(request_id, product.arrears_code, "The account is in arrears.")
        await state.latency()
        stats = state.account(account)
        injected = state.faults.take(product.protocol, state.rng)
        if injected is not None:
            stats.injected += 1
            return self._injected(account, request_id, product, injected)
        if state.in_outage():
            stats.injected += 1
            state.record(account, "HTTP 502")
            return PlainTextResponse("Bad Gateway", status_code=502)
        if state.roll(state.faults.rate_5xx):
            stats.injected += 1
            state.record(account, "InternalError")
            return _error(request_id, "InternalError", "Internal error.")
        if state.roll(state.faults.rate_429):
            stats.injected += 1
            state.record(account, "RequestLimitExceeded")
            return _error(request_id, "RequestLimitExceeded", "Your request frequency exceeds the limit.")
        if state.roll(state.faults.rate_timeout):
            stats.injected += 1
            await hang(request)
            return _error(request_id, "InternalError", "Timed out.")
        if state.roll(state.faults.rate_reset):
            stats.injected += 1
            return await drop_connection(request)
        try:
            params = json.loads(body)
            if not isinstance(params, dict):
                raise TypeError("body is not an object")
        except (ValueError, TypeError):
            state.record(account, "InvalidParameter")
            return _error(request_id, "InvalidParameter", "The request body is not a JSON object.")
        asked = [name for name in ENCRYPT_PARAMS if params.get(name) not in (None, False, "")]
        if product is FACEID and asked:
            state.record(account, "UnsupportedOperation")
            message = f"{', '.join(asked)}: encrypted requests and responses are not simulated."
            return _error(request_id, "UnsupportedOperation", message)
        image, image_error = await self._image(params)
        if image_error:
            state.record(account, image_error)
            return _error(request_id, image_error, "The image could not be obtained.")
        if product is FACEID:
            return self._faceid(account, request_id, params, image)
        return self._ocr(account, request_id, params, image)

    def _injected(self, account: str, request_id: str, product: Product, fault: CodeFault) -> Response:
        """A documented code on demand: in ``Response.Error`` (not billed) or, for FaceID
        with ``"in": "result"``, as a business answer in ``Result`` (billed, no fields)."""
        code = fault.code
        if fault.place == "result":
            self.state.bill(account, code.code, None)
            extra = self.state.faults.extra_fields
            fields = faceid_fields(code.code, code.message, {}, 0.0, "", 0.0, extra=extra)
            return _envelope(request_id, **fields)
        self.state.record(account, code.code)
        return _error(request_id, code.code, code.message)

    async def _image(self, params: dict[str, Any]) -> tuple[bytes, str]:
        """The image bytes, or an error code (ImageUrl wins when both are given)."""
        url = params.get("ImageUrl")
        if isinstance(url, str) and url:
            try:
                return await download(self.http, url), ""
            except DownloadError:
                return b"", "FailedOperation.DownLoadError"
        encoded = params.get("ImageBase64")
        if not isinstance(encoded, str) or not encoded:
            return b"", "InvalidParameter"
        if len(encoded) > MAX_BASE64_BYTES:
            return b"", "FailedOperation.ImageSizeTooLarge"
        try:
            return base64.b64decode(encoded, validate=True), ""
        except (binascii.Error, ValueError):
            return b"", "FailedOperation.ImageDecodeFailed"

    def _faceid(self, account: str, request_id: str, params: dict[str, Any], image: bytes) -> Response:
        try:
            config = json.loads(params.get("Config") or "{}")
        except (TypeError, ValueError):
            self.state.record(account, "InvalidParameter")
            return _error(request_id, "InvalidParameter", "Config is not valid JSON.")
        config = config if isinstance(config, dict) else {}
        answer = faceid_answer(self.state, image, config)
        if not answer.billable:
            self.state.record(account, answer.result)
            return _error(request_id, answer.result, answer.description)
        self.state.bill(account, answer.result, item_key(answer.truth))
        # Quality is scored whatever the Config (seed 002_'s example: 99 with CopyWarn only).
        fields = faceid_fields(
            answer.result,
            answer.description,
            answer.fields,
            answer.sim,
            ",".join(answer.warnings),
            answer.quality,
            extra=self.state.faults.extra_fields,
        )
        return _envelope(request_id, **fields)

    def _ocr(self, account: str, request_id: str, params: dict[str, Any], image: bytes) -> Response:
        state = self.state
        try:
            config = json.loads(params.get("Config") or "{}")
            if not isinstance(config, dict):
                raise TypeError("Config is not an object")
        except (TypeError, ValueError):
            state.record(account, "InvalidParameter.ConfigFormatError")
            return _error(request_id, "InvalidParameter.ConfigFormatError", "Config is not valid JSON.")
        side = str(params.get("CardSide") or "").upper()
        if side not in ("", "FRONT", "BACK"):
            state.record(account, "InvalidParameterValue.InvalidParameterValueLimit")
            return _error(request_id, "InvalidParameterValue.InvalidParameterValueLimit", "Bad CardSide.")
        look = look_at(image)
        failure = {
            "empty": ("FailedOperation.EmptyImageError", "The image is empty."),
            "undecodable": ("FailedOperation.ImageDecodeFailed", "Image decoding failed."),
            "not_card": ("FailedOperation.ImageNoIdCard", "No ID card is detected in the image."),
        }.get(look.kind)
        if failure is None and look.format not in ("JPEG", "PNG", "BMP"):
            failure = ("FailedOperation.ImageDecodeFailed", "Image format not supported.")
        truth = look.truth
        if failure is None and truth is not None:
            wanted = side.lower() or truth.side
            if truth.side != wanted or "reversed_side" in truth.variants:
                failure = ("FailedOperation.CardSideError", "The CardSide type of the ID card is incorrect.")
            elif "blur" in truth.variants and not config.get("Quality"):
                failure = ("FailedOperation.ImageBlur", "The image is blurry.")
        if failure is not None or truth is None:
            code, message = failure or ("FailedOperation.OcrFailed", "OCR failed.")
            state.record(account, code)
            return _error(request_id, code, message)
        state.bill(account, "Success", item_key(truth, truth.side))
        info = advanced_info(truth, config, seed_list=state.faults.ocr_warn_list == "seed")
        extra: dict[str, Any] = {}
        if state.faults.extra_fields:
            info[EXTRA_FIELD] = {"nested": [1, "two"]}
            extra[EXTRA_FIELD] = {"nested": True}
        return _envelope(request_id, **ocr_fields(truth), AdvancedInfo=json.dumps(info), **extra)
