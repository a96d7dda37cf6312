"""AceData ``check-1e``: ID card portrait verification (seeds 000_ and 001_).

``POST {base}/identity/idcard/check-1e`` with ``authorization: Bearer <token>`` and a
JSON body ``{"image_url": ..., "config": {...}}``. The API takes image URLs only, so
local files reach it through the image gateway and S3 objects as presigned URLs.

Error mapping (HTTP status + ``error.code``)::

    400 token_mismatched     AccountBlocked   token does not belong to this API
    400 api_not_implemented  AccountBlocked   endpoint not enabled for the account
    400 (other)              ItemRejected
    401 invalid_token        AccountBlocked
    403 (any)                AccountBlocked
    429 too_many_requests    RateLimited      honours Retry-After
    500 api_error            Unavailable
    5xx (other)              Unavailable
    transport error/timeout  Unavailable

A 200 answer carries a FaceID business code in ``result``: see ``tencent_codes``.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from idbatch.domain import NormalizedResult, Verdict, Warn, WarningCode, WarningSource
from idbatch.idnumber import normalize_sex
from idbatch.providers import errors
from idbatch.providers.base import CallRecord, ProviderAnswer, VerifyRequest
from idbatch.providers.parse import parse_date, parse_retry_after
from idbatch.providers.tencent_codes import (
    CARD_WARNINGS,
    FACEID_ERRORS,
    FACEID_OUTCOMES,
    split_warning_codes,
)

PATH = "/identity/idcard/check-1e"

# (http status, error.code) -> class; a None code is the fallback for that status.
HTTP_ERRORS: dict[tuple[int, str | None], type[errors.ProviderError]] = {
    (400, "token_mismatched"): errors.AccountBlocked,
    (400, "api_not_implemented"): errors.AccountBlocked,
    (400, None): errors.ItemRejected,
    (401, "invalid_token"): errors.AccountBlocked,
    (401, None): errors.AccountBlocked,
    (403, None): errors.AccountBlocked,
    (429, "too_many_requests"): errors.RateLimited,
    (429, None): errors.RateLimited,
    (500, "api_error"): errors.Unavailable,
    (500, None): errors.Unavailable,
}

CONFIG_KEYS = ("copy_warn", "border_check_warn", "reshoot_warn", "detect_ps_warn", "temp_id_warn", "quality")


def classify_http_error(status: int, code: str | None) -> type[errors.ProviderError]:
    if (status, code) in HTTP_ERRORS:
        return HTTP_ERRORS[(status, code)]
    if (status, None) in HTTP_ERRORS:
        return HTTP_ERRORS[(status, None)]
    if status >= 500:
        return errors.Unavailable
    return errors.ItemRejected


class AceDataProvider:
    name = "acedata"

    def __init__(
        self,
        client: httpx.Client,
        *,
        base_url: str,
        token: str,
        similarity_threshold: float = 70.0,
        account: str = "default",
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + PATH
        self._token = token
        self._threshold = similarity_threshold
        self.account = account

    def verify(self, request: VerifyRequest) -> ProviderAnswer:
        if request.front.url is None:
            raise errors.ItemRejected("AceData accepts image URLs only and no URL could be made")
        body: dict[str, Any] = {"image_url": request.front.url}
        config = {k: v for k, v in request.config.items() if k in CONFIG_KEYS}
        if config:
            body["config"] = config
        started = time.perf_counter()
        try:
            response = self._client.post(
                self._url,
                json=body,
                headers={"accept": "application/json", "authorization": f"Bearer {self._token}"},
            )
        except httpx.TimeoutException as exc:
            raise errors.Unavailable(f"timeout: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise errors.Unavailable(f"transport error: {type(exc).__name__}") from exc
        latency_ms = (time.perf_counter() - started) * 1000
        return self._interpret(response, latency_ms)

    def _interpret(self, response: httpx.Response, latency_ms: float) -> ProviderAnswer:
        try:
            payload: dict[str, Any] = response.json()
        except ValueError:
            payload = {}
        if response.status_code != 200:
            error = payload.get("error") or {}
            code = error.get("code") if isinstance(error, dict) else None
            cls = classify_http_error(response.status_code, code)
            message = (error.get("message") if isinstance(error, dict) else None) or response.reason_phrase
            raise cls(
                f"HTTP {response.status_code} {code or ''}: {message}".strip(),
                http_status=response.status_code,
                provider_code=code,
                request_id=payload.get("trace_id"),
                retry_after_s=parse_retry_after(response.headers.get("retry-after")),
            )
        result_code = str(payload.get("result") or "")
        request_id = payload.get("trace_id") or response.headers.get("x-request-id")
        if result_code in FACEID_ERRORS:
            raise FACEID_ERRORS[result_code](
                f"result {result_code}: {payload.get('description') or ''}".strip(),
                http_status=200,
                provider_code=result_code,
                request_id=request_id,
            )
        if result_code not in FACEID_OUTCOMES:
            raise errors.Unavailable(
                f"undocumented result code {result_code!r}",
                http_status=200,
                provider_code=result_code or None,
                request_id=request_id,
            )
        record = CallRecord(
            side="front",
            http_status=200,
            provider_code=result_code,
            request_id=request_id,
            latency_ms=latency_ms,
            billable=True,
            handoff="url",
        )
        return ProviderAnswer(result=self._normalize(result_code, payload), calls=[record])

    def _normalize(self, result_code: str, payload: dict[str, Any]) -> NormalizedResult:
        warns: list[Warn] = []
        outcome_warning = FACEID_OUTCOMES[result_code]
        if outcome_warning is not None:
            warns.append(Warn(outcome_warning, WarningSource.PROVIDER, provider_code=result_code))
        for code in split_warning_codes(payload.get("warnings")):
            normalized = CARD_WARNINGS.get(code)
            if normalized is not None:
                warns.append(Warn(normalized, WarningSource.PROVIDER, provider_code=code))
        sim = _float(payload.get("sim"))
        if result_code == "Success" and sim is not None and sim < self._threshold:
            warns.append(
                Warn(
                    WarningCode.LOW_SIMILARITY,
                    WarningSource.PROVIDER,
                    provider_code="sim",
                    detail=f"similarity {sim:.2f} < {self._threshold:.0f}",
                )
            )
        verdict = Verdict.PASSED if result_code == "Success" and not warns else Verdict.NEGATIVE
        return NormalizedResult(
            verdict=verdict,
            name=payload.get("name") or None,
            sex=normalize_sex(payload.get("sex")),
            nation=payload.get("nation") or None,
            birth=parse_date(payload.get("birth")),
            address=payload.get("address") or None,
            id_number=(payload.get("id_num") or None),
            similarity=sim,
            quality=_float(payload.get("quality")),
            description=payload.get("description") or None,
            warnings=warns,
            raw=payload,
        )


def _float(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None
