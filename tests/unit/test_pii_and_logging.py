"""PII: encrypted at rest, masked in output, absent from logs."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr

import structlog
from cryptography.fernet import Fernet

from idbatch.logging import configure, get_logger
from idbatch.pii import Vault, mask_address, mask_id, mask_name, scrub, strip_images

NUMBER = "110105196405176478"


def test_vault_round_trip_and_ciphertext_hides_plaintext() -> None:
    vault = Vault(Fernet.generate_key())
    token = vault.encrypt(NUMBER)
    assert token is not None and NUMBER.encode() not in token
    assert vault.decrypt(token) == NUMBER
    assert vault.decrypt_json(vault.encrypt_json({"IdNum": NUMBER})) == {"IdNum": NUMBER}


def test_lookup_hash_is_keyed() -> None:
    a, b = Vault(Fernet.generate_key()), Vault(Fernet.generate_key())
    assert a.lookup_hash(NUMBER) == a.lookup_hash(NUMBER)
    assert a.lookup_hash(NUMBER) != b.lookup_hash(NUMBER)


def test_masks() -> None:
    assert mask_id(NUMBER) == "110***********6478"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_address("北京市东城区景山前街4号") == "北京市东城区…"
    assert scrub(f"card {NUMBER} refused") == "card 110***********6478 refused"


def test_images_are_replaced_by_digests_before_storage() -> None:
    raw = {"Portrait": "/9j/" + "A" * 500, "Name": "x", "nested": [{"photo": "B" * 100}]}
    out = strip_images(raw)
    assert out["Portrait"].startswith("<image sha256:")
    assert out["nested"][0]["photo"].startswith("<image sha256:")
    assert out["Name"] == "x"


def test_logs_never_carry_id_numbers_or_pii_fields() -> None:
    buf = io.StringIO()
    structlog.reset_defaults()
    with redirect_stderr(buf):
        configure("INFO", json_logs=True)
        log = get_logger("t")
        log.info("call failed", error=f"bad number {NUMBER}", name="张三", id_number=NUMBER)
    structlog.reset_defaults()
    line = buf.getvalue().strip().splitlines()[-1]
    event = json.loads(line)
    assert NUMBER not in line and "张三" not in line
    assert event["name"] == "<redacted>" and event["id_number"] == "<redacted>"
    assert "110***********6478" in event["error"]
