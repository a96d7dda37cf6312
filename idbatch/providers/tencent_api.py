"""One Tencent Cloud API 3.0 call: JSON body, TC3 signature made at send time, envelope.

Both Tencent adapters (FaceID, OCR) go through here. The caller gets the ``Response``
object back whether or not it holds an ``Error``, because which codes are *answers*
(a negative verdict) and which are *errors* is the adapter's table, not ours. Only what
no table can interpret is raised here: transport failures and non-JSON, non-200 answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit

import httpx

from idbatch.providers import errors, tc3
from idbatch.providers.common import send
from idbatch.providers.tencent_codes import TENCENT_HTTP_ERRORS


@dataclass
class TencentReply:
    http_status: int
    response: dict[str, Any]
    error_code: str | None
    error_message: str
    request_id: str | None
    latency_ms: float


class TencentCaller:
    """Signs and sends one action to one Tencent product endpoint."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        base_url: str,
        service: str,
        action: str,
        version: str,
        secret_id: str,
        secret_key: str,
        region: str | None = None,
        token: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(base_url)
        self._client = client
        # The API lives at "/"; a path in base_url (the simulator's /tencent/ocr) is kept,
        # but the canonical URI stays "/" exactly as the official SDK signs it.
        self._url = base_url.rstrip("/") + "/"
        self._host = parts.netloc
        self._service = service
        self._action = action
        self._version = version
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._region = region or None
        self._token = token or None
        self._clock = clock

    def call(self, params: dict[str, Any], *, side: str) -> TencentReply:
        body = json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = tc3.signed_headers(
            secret_id=self._secret_id,
            secret_key=self._secret_key,
            service=self._service,
            host=self._host,
            action=self._action,
            version=self._version,
            payload=body,
            region=self._region,
            token=self._token,
            timestamp=int(self._clock()),  # fresh on every attempt: never reuse a signature
        )
        response, latency_ms = send(self._client, self._url, side=side, content=body, headers=headers)
        try:
            envelope = response.json()
            payload = envelope["Response"]
            if not isinstance(payload, dict):
                raise TypeError("Response is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            status = response.status_code
            cls = TENCENT_HTTP_ERRORS.get(status, errors.Unavailable)
            raise cls(
                f"HTTP {status} without a Tencent envelope",
                http_status=status,
                side=side,
            ) from exc
        error = payload.get("Error")
        code = message = None
        if isinstance(error, dict):
            code = str(error.get("Code") or "") or None
            message = str(error.get("Message") or "")
        return TencentReply(
            http_status=response.status_code,
            response=payload,
            error_code=code,
            error_message=message or "",
            request_id=payload.get("RequestId"),
            latency_ms=latency_ms,
        )


def refuse_encrypted(reply: TencentReply, *, side: str) -> None:
    """An encrypted answer (``Encryption`` set, ``EncryptedBody``) cannot be read: idbatch
    never asks for one, so the account or something between us and Tencent does. That is
    configuration, not the card: block the account rather than record empty fields."""
    payload = reply.response
    if payload.get("Encryption") or payload.get("EncryptedBody"):
        raise errors.AccountBlocked(
            "encrypted answer (Encryption/EncryptedBody): idbatch does not request encryption",
            http_status=reply.http_status,
            provider_code="Encryption",
            request_id=reply.request_id,
            side=side,
        )


def raise_error(reply: TencentReply, cls: type[errors.ProviderError], code: str, *, side: str) -> NoReturn:
    raise cls(
        f"{code}: {reply.error_message}".strip(),
        http_status=reply.http_status,
        provider_code=code,
        request_id=reply.request_id,
        side=side,
    )


class TencentProduct:
    """What the FaceID and OCR adapters share: a signed caller for their one action,
    the hand-off preference and the account. Subclasses name the product."""

    SERVICE: ClassVar[str]
    ACTION: ClassVar[str]
    VERSION: ClassVar[str]

    def __init__(
        self,
        client: httpx.Client,
        *,
        base_url: str,
        secret_id: str,
        secret_key: str,
        region: str | None = None,
        handoff: str = "inline",
        account: str = "default",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._caller = TencentCaller(
            client,
            base_url=base_url,
            service=self.SERVICE,
            action=self.ACTION,
            version=self.VERSION,
            secret_id=secret_id,
            secret_key=secret_key,
            region=region,
            clock=clock,
        )
        self._handoff = handoff
        self.account = account
