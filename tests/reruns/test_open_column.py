"""The export's column decryption equals ``decrypt`` token by token, whatever key wrote it."""

from __future__ import annotations

import base64

from idbatch.pii import AD_NAME, Vault

OLD = base64.urlsafe_b64encode(b"o" * 32)
NEW = base64.urlsafe_b64encode(b"n" * 32)


def test_open_column_reads_current_and_old_keys_and_none() -> None:
    old = Vault(OLD)
    ring = Vault(NEW, [OLD])
    tokens = [
        ring.encrypt("张三", AD_NAME),
        None,
        old.encrypt("李四", AD_NAME),
        ring.encrypt("王五", AD_NAME),
    ]
    assert ring.open_column(tokens, AD_NAME) == ["张三", None, "李四", "王五"]
    assert ring.open_column(tokens, AD_NAME) == [ring.decrypt(t, AD_NAME) for t in tokens]
