"""PII key rotation: every token re-encrypted under the current key, every keyed hash re-keyed.

Runbook (docs/security.md): make the new key ``IDBATCH_PII_KEY``, list the old one in
``IDBATCH_PII_OLD_KEYS``, restart the processes (they now write under the new key and
still read the old), run ``idbatch keys rotate`` until it reports 0 rows, then drop the
old key. It works in keyset pages, one short transaction each, beside live workers, and
can be stopped and run again: a row already under the current key is skipped.

Keyed values are recomputed from the decrypted claims: the claimed and recognized ID
hashes, and idempotency keys (only those that match the old key's computation: S3
object-identity keys name no PII and stay). Content keys cannot be recomputed (they hash
the image bytes): after a rotation an old answer is no longer found for reuse, which can
cost one call per card, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from db.models import Batch, Job, Result, SideAnswer
from db.session import session_scope
from idbatch.idnumber import normalize
from idbatch.pii import (
    AD_ADDRESS,
    AD_CLAIMED_ID,
    AD_CLAIMED_NAME,
    AD_ID_NUMBER,
    AD_NAME,
    AD_RAW,
    AD_SIDE,
    IDEMPOTENCY_PURPOSE,
    Vault,
)

PAGE = 500


@dataclass
class RotationStats:
    jobs: int = 0
    results: int = 0
    side_answers: int = 0

    @property
    def rows(self) -> int:
        return self.jobs + self.results + self.side_answers


def _stale(vault: Vault, *tokens: bytes | None) -> bool:
    return any(t is not None and vault.token_key_id(bytes(t)) != vault.current_key_id for t in tokens)


def _material_digest(provider: str, config: Any, fields: list[str | None]) -> str:
    """sha256 of the documented idempotency material (producers.keys.idempotency_key)."""
    material = json.dumps(
        [provider, config, *fields], ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _pages(model: Any) -> Iterator[list[Any]]:
    last = 0
    while True:
        with session_scope() as session:
            rows = list(session.scalars(select(model).where(model.id > last).order_by(model.id).limit(PAGE)))
            session.expunge_all()
        if not rows:
            return
        last = rows[-1].id
        yield rows


def rotate_pii_keys(vault: Vault, old: list[Vault]) -> RotationStats:
    """Re-encrypt and re-key every row not yet under ``vault``'s current key."""
    stats = RotationStats()
    with session_scope() as session:
        batches = {b.id: (b.provider, b.provider_config or {}) for b in session.scalars(select(Batch))}
    for rows in _pages(Job):
        with session_scope() as session:
            for job in rows:
                name, number = vault.claims(job.claimed_name_enc, job.claimed_id_enc)
                values: dict[str, Any] = {}
                if _stale(vault, job.claimed_name_enc, job.claimed_id_enc):
                    values = {
                        "claimed_name_enc": vault.encrypt(name, AD_CLAIMED_NAME),
                        "claimed_id_enc": vault.encrypt(number, AD_CLAIMED_ID),
                        "claimed_id_hash": vault.lookup_hash(number),
                    }
                key = job.idempotency_key
                if key is not None and job.front_image is not None and job.batch_id in batches:
                    fields = [job.front_image, job.back_image, name, number]
                    digest = _material_digest(*batches[job.batch_id], fields)
                    if any(key == o.keyed(IDEMPOTENCY_PURPOSE, digest) for o in old):
                        values["idempotency_key"] = vault.keyed(IDEMPOTENCY_PURPOSE, digest)
                if not values:
                    continue
                session.execute(update(Job).where(Job.id == job.id).values(**values))
                stats.jobs += 1
    for rows in _pages(Result):
        with session_scope() as session:
            for r in rows:
                if not _stale(vault, r.name_enc, r.address_enc, r.id_number_enc, r.raw_enc):
                    continue
                number = vault.decrypt(r.id_number_enc, AD_ID_NUMBER)
                raw = (
                    None
                    if r.raw_enc is None
                    else vault.encrypt_json(vault.decrypt_json(r.raw_enc, AD_RAW), AD_RAW)
                )
                session.execute(
                    update(Result)
                    .where(Result.id == r.id)
                    .values(
                        name_enc=vault.encrypt(vault.decrypt(r.name_enc, AD_NAME), AD_NAME),
                        address_enc=vault.encrypt(vault.decrypt(r.address_enc, AD_ADDRESS), AD_ADDRESS),
                        id_number_enc=vault.encrypt(number, AD_ID_NUMBER),
                        raw_enc=raw,
                        id_number_hash=vault.lookup_hash(normalize(number) if number else None),
                    )
                )
                stats.results += 1
    for rows in _pages(SideAnswer):
        with session_scope() as session:
            for a in rows:
                if _stale(vault, a.payload_enc):
                    payload = vault.encrypt_json(vault.decrypt_json(a.payload_enc, AD_SIDE), AD_SIDE)
                    session.execute(
                        update(SideAnswer).where(SideAnswer.id == a.id).values(payload_enc=payload)
                    )
                    stats.side_answers += 1
    return stats
