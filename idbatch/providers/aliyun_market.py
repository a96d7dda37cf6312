"""Aliyun-marketplace ID card OCR (seed 004_): a vendor API behind Aliyun's API gateway.

``POST {base_url}{path}`` with ``Authorization: APPCODE <code>`` and a JSON body (the
seed's 460 "body is not valid JSON" and 461 "missing key: image" describe one):
``image`` (base64 or an image URL), ``id_card_side`` (front/back: a job with a back image
makes two calls), ``detect_direction``, ``detect_risk`` and ``detect_photo``. Answers
follow Baidu's ID card OCR: ``msg`` (the parsed fields, with ``valid``; typed "array" in
the seed, so an object or a list of objects), ``words_result``, ``image_status``,
``risk_type``, ``edit_tool``, ``idcard_number_type`` (a string in the seed; numbers are
read too), ``photo``, ``log_id`` (a uint64: kept exact, as the call's request id, since
it is what the vendor asks for to locate a problem; the gateway's ``X-Ca-Request-Id``
only when there is no ``log_id``). A vendor error's body is undocumented: the status
decides, a message found in the body (text or JSON) only refines 462 and 464.

Who answered decides how to read an error: a response carrying ``X-Ca-Error-Code`` /
``X-Ca-Error-Message`` was produced by the gateway and is classified by that message
(``GATEWAY_ERRORS``; throttling is a **403** "Throttled by ... Flow Control", not a 429);
anything else came from the vendor and is classified by status (``VENDOR_ERRORS``, the
seed's table, with a few rows refined by message). Only HTTP 200 answers are billed.

Gateway (X-Ca-Error-Message prefix)::

    Throttled by APP/API/USER/DOMAIN Flow Control        RateLimited
    Quota Exhausted / Quota Expired / User Arrears /
    Expiry of Authorization / Unauthorized / Invalid AppCode /
    Invalid Url / Invalid Domain / Invalid AppKey          AccountBlocked
    Empty/Invalid Request Body, Request body too Large     ItemRejected
    Internal Error / Failed To Invoke Backend Service /
    Backend Service Timeout / Service Unavailable          Unavailable
    (other, by status: 403 AccountBlocked, 5xx Unavailable, else ItemRejected)

Vendor (status[, message])::

    400 Invalid URL        AccountBlocked   the endpoint is misconfigured
    403 Forbidden          AccountBlocked   not purchased / used up
    408 Request Timeout    Unavailable
    413 Payload Too Large  ItemRejected     (prevented: limits.ALIYUN)
    450 queue full         RateLimited      "retry": back the account off
    460 invalid json       ItemRejected
    461 json format error  ItemRejected
    462 download error     Unavailable      a fresh URL on retry may work
    462 (other image data) ItemRejected
    463 wrong category     outcome          not_id_card (negative verdict)
    464 algorithm failed   outcome          ocr_failed (negative verdict)
    464 runtime exception  Unavailable
    469 internal           Unavailable
    502 / 503              Unavailable
"""

from __future__ import annotations

from typing import Any, NoReturn

import httpx

from idbatch.domain import NormalizedResult, Verdict, Warn, WarningCode, WarningSource
from idbatch.idnumber import normalize_sex
from idbatch.providers import errors, limits
from idbatch.providers.aliyun_answers import answer_warns, fields
from idbatch.providers.base import CallRecord, ProviderAnswer, VerifyRequest
from idbatch.providers.common import choose_handoff, handing_off, send
from idbatch.providers.parse import parse_date

Classified = type[errors.ProviderError] | WarningCode

GATEWAY_ERRORS: dict[str, type[errors.ProviderError]] = {
    "Throttled by APP Flow Control": errors.RateLimited,
    "Throttled by API Flow Control": errors.RateLimited,
    "Throttled by USER Flow Control": errors.RateLimited,
    "Throttled by DOMAIN Flow Control": errors.RateLimited,
    "Quota Exhausted": errors.AccountBlocked,
    "Quota Expired": errors.AccountBlocked,
    "User Arrears": errors.AccountBlocked,
    "Expiry of Authorization": errors.AccountBlocked,
    "Unauthorized": errors.AccountBlocked,
    "Invalid AppCode": errors.AccountBlocked,
    "Invalid Url": errors.AccountBlocked,
    "Invalid Domain": errors.AccountBlocked,
    "Invalid AppKey": errors.AccountBlocked,
    "Empty Request Body": errors.ItemRejected,
    "Invalid Request Body": errors.ItemRejected,
    "Request body too Large": errors.ItemRejected,
    "Internal Error": errors.Unavailable,
    "Failed To Invoke Backend Service": errors.Unavailable,
    "Backend Service Timeout": errors.Unavailable,
    "Service Unavailable": errors.Unavailable,
}

# (status, message fragment or None) -> class or outcome; None is the status's fallback.
VENDOR_ERRORS: dict[tuple[int, str | None], Classified] = {
    (400, None): errors.AccountBlocked,
    (403, None): errors.AccountBlocked,
    (408, None): errors.Unavailable,
    (413, None): errors.ItemRejected,
    (450, None): errors.RateLimited,
    (460, None): errors.ItemRejected,
    (461, None): errors.ItemRejected,
    (462, "download image from url error"): errors.Unavailable,
    (462, None): errors.ItemRejected,
    (463, None): WarningCode.NOT_ID_CARD,
    (464, "runtime exception"): errors.Unavailable,
    (464, None): WarningCode.OCR_FAILED,
    (469, None): errors.Unavailable,
    (502, None): errors.Unavailable,
    (503, None): errors.Unavailable,
}

RISK_FLAGS = ("copy_warn", "reshoot_warn", "detect_ps_warn", "temp_id_warn", "detect_risk")
CONFIG_KEYS = (*RISK_FLAGS, "detect_direction", "detect_photo")
DEFAULT_PATH = "/ocr/idcard"  # the vendor does not publish one path: set IDBATCH_ALIYUN_PATH


def classify_gateway(status: int, message: str) -> type[errors.ProviderError]:
    for prefix, cls in GATEWAY_ERRORS.items():
        if message.startswith(prefix):
            return cls
    if status in (401, 403):
        return errors.AccountBlocked
    if status == 429:
        return errors.RateLimited
    if status >= 500 or status == 408:
        return errors.Unavailable
    return errors.ItemRejected


def classify_vendor(status: int, message: str) -> Classified:
    for (code, fragment), cls in VENDOR_ERRORS.items():
        if code == status and fragment is not None and fragment in message:
            return cls
    found = VENDOR_ERRORS.get((status, None))
    if found is not None:
        return found
    return errors.Unavailable if status >= 500 else errors.ItemRejected


def _flag(value: Any) -> str:
    return "true" if value not in (None, False, 0, "false") else "false"


class AliyunMarketProvider:
    name = "aliyun_market"
    two_sided = True  # id_card_side=front and =back are separate, separately billed calls

    def __init__(
        self,
        client: httpx.Client,
        *,
        base_url: str,
        appcode: str,
        path: str = DEFAULT_PATH,
        handoff: str = "inline",
        account: str = "default",
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/" + path.lstrip("/")
        self._appcode = appcode
        self._handoff = handoff
        self.account = account

    def verify(self, request: VerifyRequest) -> ProviderAnswer:
        calls: list[CallRecord] = []
        answered: dict[str, dict[str, Any]] = {}
        front = self._side(request, "front", calls, answered)
        back: dict[str, Any] | WarningCode | None = None
        if request.back is not None and isinstance(front, dict):
            back = self._side(request, "back", calls, answered)
        return ProviderAnswer(result=self._merge(front, back, request.config), calls=calls)

    def _side(
        self,
        request: VerifyRequest,
        side: str,
        calls: list[CallRecord],
        answered: dict[str, dict[str, Any]],
    ) -> dict[str, Any] | WarningCode:
        """One side's answer: stored by an earlier attempt (paid already), or called now."""
        stored = request.answered.get(side)
        if stored is not None:
            return dict(stored)
        try:
            answer, record = self._call(request, side, done=calls)
        except errors.ProviderError as exc:
            exc.answered = dict(answered)  # the worker keeps them: the retry will not pay again
            raise
        calls.append(record)
        if isinstance(answer, dict) and record.billable:
            answered[side] = answer
        return answer

    def _call(
        self, request: VerifyRequest, side: str, *, done: list[CallRecord]
    ) -> tuple[dict[str, Any] | WarningCode, CallRecord]:
        source = request.front if side == "front" else request.back
        assert source is not None
        config = request.config
        try:
            handoff, image = choose_handoff(source, self._handoff, limits.ALIYUN, side=side)
            body = {
                "image": limits.b64(image) if isinstance(image, bytes) else image,
                "id_card_side": side,
                "detect_direction": _flag(config.get("detect_direction", True)),
                "detect_risk": _flag(any(config.get(k) for k in RISK_FLAGS)),
                "detect_photo": _flag(config.get("detect_photo", False)),
            }
            request.paced(done)  # BACK after FRONT: its own rate slot, just before the send
            with handing_off(handoff):
                response, latency_ms = send(
                    self._client,
                    self._url,
                    side=side,
                    json=body,
                    headers={"Authorization": f"APPCODE {self._appcode}", "Accept": "application/json"},
                )
            request_id = response.headers.get("x-ca-request-id")
            if response.status_code == 200:
                try:
                    answer = response.json()
                except ValueError:
                    answer = None
                if not isinstance(answer, dict):
                    raise errors.Unavailable(
                        "HTTP 200 with a body that is not a JSON object",
                        http_status=200,
                        request_id=request_id,
                        side=side,
                        billable=True,
                        handoff=handoff,
                    )
                record = CallRecord(
                    side=side,
                    http_status=200,
                    provider_code=str(answer.get("image_status") or "200"),
                    request_id=_str(answer.get("log_id")) or request_id,
                    latency_ms=latency_ms,
                    billable=True,
                    handoff=handoff,
                )
                return answer, record
            with handing_off(handoff):
                outcome = self._error(response, side, request_id)
            record = CallRecord(
                side=side,
                http_status=response.status_code,
                provider_code=str(response.status_code),
                request_id=request_id,
                latency_ms=latency_ms,
                billable=False,
                handoff=handoff,
            )
            return outcome, record
        except errors.ProviderError as exc:
            exc.calls = list(done)
            raise

    @staticmethod
    def _error(response: httpx.Response, side: str, request_id: str | None) -> WarningCode:
        status = response.status_code
        gateway_code = response.headers.get("x-ca-error-code")
        gateway_message = response.headers.get("x-ca-error-message")
        if gateway_code or gateway_message:
            message = gateway_message or ""
            _raise(
                classify_gateway(status, message), status, gateway_code or message, message, side, request_id
            )
        message = _vendor_message(response)
        found = classify_vendor(status, message)
        if isinstance(found, WarningCode):
            return found
        _raise(found, status, str(status), message, side, request_id)
        return None

    def _merge(
        self,
        front: dict[str, Any] | WarningCode,
        back: dict[str, Any] | WarningCode | None,
        config: dict[str, Any],
    ) -> NormalizedResult:
        warns: list[Warn] = []
        merged: dict[str, Any] = {}
        raw: dict[str, Any] = {}
        for side, answer in (("front", front), ("back", back)):
            if answer is None:
                continue
            if isinstance(answer, WarningCode):
                warns.append(Warn(answer, WarningSource.PROVIDER, provider_code=f"{side}:vendor"))
                continue
            raw[side] = answer
            warns += answer_warns(answer)
            merged.update(fields(answer))
        birth = parse_date(merged.get("birthday"))
        end = str(merged.get("enddate") or "")
        long_term = "长期" in end
        return NormalizedResult(
            verdict=Verdict.NEGATIVE if warns else Verdict.PASSED,
            name=merged.get("name") or None,
            sex=normalize_sex(merged.get("sex")),
            nation=merged.get("nation") or None,
            birth=birth,
            address=merged.get("address") or None,
            id_number=merged.get("idcardno") or None,
            authority=merged.get("gov") or None,
            valid_from=parse_date(merged.get("begindate")),
            valid_to=None if long_term else parse_date(end),
            valid_long_term=long_term,
            warnings=warns,
            raw=raw,
        )


def _vendor_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        for key in ("error_msg", "message", "msg", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return ""


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _raise(
    cls: type[errors.ProviderError],
    status: int,
    code: str,
    message: str,
    side: str,
    request_id: str | None,
) -> NoReturn:
    raise cls(
        f"HTTP {status} {message}".strip(),
        http_status=status,
        provider_code=code,
        request_id=request_id,
        side=side,
    )
