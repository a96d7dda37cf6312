"""Idempotency keys: the same billable question always gets the same key.

Computed for every row at ingest (tens of thousands a second), so the JSON prefix of a
(provider, config) is encoded once; keyed under a sub-key of the PII key so the
database alone cannot confirm a guessed name and ID number.
"""

from __future__ import annotations

import hashlib
import json
from json.encoder import encode_basestring
from typing import Any

from idbatch.pii import IDEMPOTENCY_PURPOSE, vault


def idempotency_key(
    provider: str,
    config: dict[str, Any],
    front: str,
    back: str | None,
    claimed_name: str | None,
    claimed_id: str | None,
) -> str:
    """What is being verified, by whom, how: equal keys mean the same billable question.

    The key is ``HMAC(k, sha256(json.dumps([provider, config, front, back, name, id],
    ensure_ascii=False, sort_keys=True, separators=(",", ":"))))`` under a sub-key of the
    PII key (``Vault.keyed``): a plain digest of a claimed name and ID number could be
    brute-forced from the database alone. Keys are compared with keys stored months ago,
    so that text must never change; ``_KeyMaker`` builds the same bytes faster for bulk
    ingest and a test holds the two equal.
    """
    return _KeyMaker(provider, config)(front, back, claimed_name, claimed_id)


IDEMPOTENCY = IDEMPOTENCY_PURPOSE  # the sub-key's purpose; migration 0005 keyed older rows


class _KeyMaker:
    """``idempotency_key`` for one (provider, config): the JSON prefix is encoded once.

    Ingest computes a key per row; a full ``json.dumps`` of the list costs ~6 µs, the
    C string encoder on the four fields ~1 µs.
    """

    def __init__(self, provider: str, config: dict[str, Any]) -> None:
        head = json.dumps([provider, config], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        self._head = head[:-1] + ","

    def __call__(self, front: str, back: str | None, name: str | None, id_number: str | None) -> str:
        parts = (front, back, name, id_number)
        fields = ",".join("null" if f is None else encode_basestring(f) for f in parts)
        return vault().keyed(IDEMPOTENCY, hashlib.sha256(f"{self._head}{fields}]".encode()).hexdigest())


_KEY_MAKERS: dict[str, _KeyMaker] = {}


def _key_maker(provider: str, config: dict[str, Any]) -> _KeyMaker:
    """The row's key maker; by value of the config, which is usually empty (no dumps then)."""
    cache_key = provider if config == {} else json.dumps([provider, config], sort_keys=True)
    maker = _KEY_MAKERS.get(cache_key)
    if maker is None:
        if len(_KEY_MAKERS) > 64:
            _KEY_MAKERS.clear()
        maker = _KEY_MAKERS[cache_key] = _KeyMaker(provider, config)
    return maker
