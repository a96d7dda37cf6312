"""TC3-HMAC-SHA256: known-answer vectors from the public algorithm, and the simulator's checks."""

from __future__ import annotations

import json

import pytest

from idbatch.providers import errors, tc3
from idbatch.providers.tencent_faceid import TencentFaceIdProvider
from tests.providers.conftest import SECRET_ID, SECRET_KEY, Sim, card

# Tencent's published signing example (CVM DescribeInstances, 2019-02-25), reproduced
# by every independent TC3 implementation: masked key, literal asterisks included.
DOC_PAYLOAD = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
DOC_SECRET_ID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******"
DOC_SECRET_KEY = "Gu5t9xGARNpq86cd98joQYCN3*******"
DOC_TIMESTAMP = 1551113065


def test_payload_hash_matches_the_published_vector() -> None:
    assert tc3.sha256_hex(DOC_PAYLOAD) == "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"


def test_canonical_request_and_string_to_sign_match_the_published_vector() -> None:
    canonical = tc3.canonical_request(host="cvm.tencentcloudapi.com", payload=DOC_PAYLOAD)
    assert canonical == (
        "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\n"
        "content-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    to_sign = tc3.string_to_sign(timestamp=DOC_TIMESTAMP, service="cvm", canonical=canonical)
    assert to_sign == (
        "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n"
        "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    )


def test_authorization_matches_the_published_vector() -> None:
    value = tc3.authorization(
        secret_id=DOC_SECRET_ID,
        secret_key=DOC_SECRET_KEY,
        service="cvm",
        host="cvm.tencentcloudapi.com",
        payload=DOC_PAYLOAD,
        timestamp=DOC_TIMESTAMP,
    )
    assert value == (
        f"TC3-HMAC-SHA256 Credential={DOC_SECRET_ID}/2019-02-25/cvm/tc3_request, "
        "SignedHeaders=content-type;host, "
        "Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
    )
    parsed = tc3.parse_authorization(value)
    assert parsed is not None
    assert (parsed.secret_id, parsed.date, parsed.service) == (DOC_SECRET_ID, "2019-02-25", "cvm")


def test_the_credential_date_is_the_utc_date_of_the_timestamp() -> None:
    # 2019-02-26 00:44:25 in Beijing is still the 25th in UTC.
    assert tc3.utc_date(DOC_TIMESTAMP) == "2019-02-25"


def test_every_call_is_signed_with_the_clock_at_that_moment() -> None:
    ticks = iter([1_700_000_000, 1_700_000_400])
    headers = [
        tc3.signed_headers(
            secret_id="id",
            secret_key="key",
            service="ocr",
            host="ocr.tencentcloudapi.com",
            action="IDCardOCR",
            version="2018-11-19",
            payload=b"{}",
            timestamp=next(ticks),
        )
        for _ in range(2)
    ]
    assert headers[0]["X-TC-Timestamp"] != headers[1]["X-TC-Timestamp"]
    assert headers[0]["Authorization"] != headers[1]["Authorization"]


def _post_signed(
    sim: Sim,
    body: bytes,
    *,
    sent_body: bytes | None = None,
    timestamp: int | None = None,
    secret_id: str = SECRET_ID,
    secret_key: str = SECRET_KEY,
) -> dict[str, object]:
    host = sim.url.split("://", 1)[1]
    headers = tc3.signed_headers(
        secret_id=secret_id,
        secret_key=secret_key,
        service="ocr",
        host=host,
        action="IDCardOCR",
        version="2018-11-19",
        payload=body,
        timestamp=timestamp,
    )
    response = sim.client.post(sim.url + "/tencent/ocr/", content=sent_body or body, headers=headers)
    assert response.status_code == 200
    result: dict[str, object] = response.json()["Response"]
    return result


def _error_code(answer: dict[str, object]) -> str | None:
    error = answer.get("Error")
    return str(error["Code"]) if isinstance(error, dict) else None


def test_a_properly_signed_request_is_accepted(sim: Sim) -> None:
    body = json.dumps({"ImageBase64": __import__("base64").b64encode(card()).decode(), "CardSide": "FRONT"})
    answer = _post_signed(sim, body.encode())
    assert _error_code(answer) is None
    assert answer["RequestId"]


def test_a_tampered_body_is_refused_with_signature_failure(sim: Sim) -> None:
    signed = b'{"CardSide":"FRONT","ImageUrl":"http://example.invalid/a.jpg"}'
    tampered = b'{"CardSide":"BACK","ImageUrl":"http://example.invalid/a.jpg"}'
    assert _error_code(_post_signed(sim, signed, sent_body=tampered)) == "AuthFailure.SignatureFailure"


def test_a_stale_timestamp_is_refused_with_signature_expire(sim: Sim) -> None:
    import time

    stale = int(time.time()) - 301
    assert _error_code(_post_signed(sim, b"{}", timestamp=stale)) == "AuthFailure.SignatureExpire"


def test_an_unknown_secret_id_is_refused(sim: Sim) -> None:
    assert _error_code(_post_signed(sim, b"{}", secret_id="AKIDunknown")) == "AuthFailure.SecretIdNotFound"


def test_a_wrong_secret_key_is_a_signature_failure(sim: Sim) -> None:
    assert _error_code(_post_signed(sim, b"{}", secret_key="wrong")) == "AuthFailure.SignatureFailure"


def test_adapter_with_a_skewed_clock_is_account_blocked(sim: Sim) -> None:
    import time

    provider: TencentFaceIdProvider = sim.faceid(clock=lambda: time.time() - 3600)
    with pytest.raises(errors.AccountBlocked) as info:
        provider.verify(sim.request(card()))
    assert info.value.provider_code == "AuthFailure.SignatureExpire"
