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

from typing import Any

import httpx

from idbatch.domain import NormalizedResult
from idbatch.providers import errors
from idbatch.providers.base import CallRecord, ProviderAnswer, VerifyRequest
from idbatch.providers.common import handing_off, send
from idbatch.providers.parse import parse_retry_after
from idbatch.providers.tencent_codes import FACEID_ERRORS, FACEID_OUTCOMES, faceid_result

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

# AceData's lower-case answer fields -> FaceID's names (it relays FaceID).
FIELD_NAMES = {
    "name": "Name",
    "sex": "Sex",
    "nation": "Nation",
    "birth": "Birth",
    "address": "Address",
    "id_num": "IdNum",
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
    two_sided = False  # one call per card (the front); see Provider.two_sided

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
        with handing_off("url"):  # the provider fetches the image itself
            response, latency_ms = send(
                self._client,
                self._url,
                side="front",
                json=body,
                headers={"accept": "application/json", "authorization": f"Bearer {self._token}"},
            )
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
        # The seed's success example has no trace_id (its error example does): optional.
        request_id = payload.get("trace_id") or response.headers.get("x-request-id")
        if payload.get("encryption"):
            raise errors.AccountBlocked(
                "encrypted answer: idbatch does not request encryption",
                http_status=200,
                provider_code="encryption",
                request_id=request_id,
            )
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
        fields = {name: payload.get(key) for key, name in FIELD_NAMES.items()}
        return faceid_result(
            result_code,
            fields=fields,
            sim=payload.get("sim"),
            warnings=payload.get("warnings"),
            quality=payload.get("quality"),
            description=payload.get("description"),
            threshold=self._threshold,
            raw=payload,
        )
