"""Tencent Cloud API 3.0 request signing (TC3-HMAC-SHA256), for clients and the simulator.

Follows ``tencentcloud/common/sign.py`` and ``abstract_client.py`` of the official
``tencentcloud-sdk-python``: POST to ``/`` with a JSON body, signed headers
``content-type;host``, credential scope ``<UTC date>/<service>/tc3_request``. The server
refuses a timestamp more than five minutes off, so callers sign afresh on every attempt
(never reuse the headers of a previous try).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from dataclasses import dataclass

ALGORITHM = "TC3-HMAC-SHA256"
SIGNED_HEADERS = "content-type;host"
CONTENT_TYPE = "application/json; charset=utf-8"
MAX_SKEW_S = 300


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def utc_date(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")


def canonical_request(
    *, host: str, payload: bytes, content_type: str = CONTENT_TYPE, method: str = "POST", query: str = ""
) -> str:
    """``POST\\n/\\n\\ncontent-type:...\\nhost:...\\n\\ncontent-type;host\\n<sha256(body)>``."""
    headers = f"content-type:{content_type}\nhost:{host}\n"
    return "\n".join((method, "/", query, headers, SIGNED_HEADERS, sha256_hex(payload)))


def string_to_sign(*, timestamp: int, service: str, canonical: str) -> str:
    scope = f"{utc_date(timestamp)}/{service}/tc3_request"
    return "\n".join((ALGORITHM, str(timestamp), scope, sha256_hex(canonical.encode("utf-8"))))


def signature(*, secret_key: str, timestamp: int, service: str, to_sign: str) -> str:
    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), utc_date(timestamp))
    k_service = _hmac(k_date, service)
    k_signing = _hmac(k_service, "tc3_request")
    return hmac.new(k_signing, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(
    *,
    secret_id: str,
    secret_key: str,
    service: str,
    host: str,
    payload: bytes,
    timestamp: int,
    content_type: str = CONTENT_TYPE,
) -> str:
    canonical = canonical_request(host=host, payload=payload, content_type=content_type)
    to_sign = string_to_sign(timestamp=timestamp, service=service, canonical=canonical)
    sig = signature(secret_key=secret_key, timestamp=timestamp, service=service, to_sign=to_sign)
    scope = f"{utc_date(timestamp)}/{service}/tc3_request"
    return f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={sig}"


def signed_headers(
    *,
    secret_id: str,
    secret_key: str,
    service: str,
    host: str,
    action: str,
    version: str,
    payload: bytes,
    region: str | None = None,
    token: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Every header a Tencent Cloud API 3.0 POST needs, signed now (or at ``timestamp``)."""
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Authorization": authorization(
            secret_id=secret_id,
            secret_key=secret_key,
            service=service,
            host=host,
            payload=payload,
            timestamp=ts,
        ),
        "Content-Type": CONTENT_TYPE,
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Version": version,
        "X-TC-Timestamp": str(ts),
    }
    if region:
        headers["X-TC-Region"] = region
    if token:
        headers["X-TC-Token"] = token
    return headers


@dataclass(frozen=True)
class ParsedAuthorization:
    secret_id: str
    date: str
    service: str
    signed_headers: str
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Split an ``Authorization: TC3-HMAC-SHA256 Credential=..., ...`` header; None if malformed."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        return None
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            return None
        parts[key] = val
    try:
        secret_id, date, service, terminator = parts["Credential"].split("/")
        return (
            ParsedAuthorization(secret_id, date, service, parts["SignedHeaders"], parts["Signature"])
            if terminator == "tc3_request"
            else None
        )
    except (KeyError, ValueError):
        return None
