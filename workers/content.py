"""The content key: what exactly a provider call would be paying for.

``job.idempotency_key`` is computed at ingest from image *references* (cheap: ingest
must not read 20k images a second) and finds duplicate rows and resubmitted manifests.
It cannot prove two references hold the same picture, so right before calling, the
worker computes the content key from the image *bytes* + provider + config + claimed
identity: if an earlier job with that key has a paid answer, the job reuses it.
"""

from __future__ import annotations

import hashlib
import json

from db.jobs import Claim
from idbatch.pii import AD_CLAIMED_ID, AD_CLAIMED_NAME, vault
from idbatch.providers.base import ImageSource


def _digest(source: ImageSource | None) -> str | None:
    if source is None:
        return None
    if source.load is not None:
        return hashlib.sha256(source.load()).hexdigest()
    return "ref:" + source.ref  # a URL the provider fetches itself: its content is unknown here


def content_key(claimed: Claim, front: ImageSource, back: ImageSource | None) -> str:
    """What is verified: image bytes, provider, its config, the claimed identity (keyed hash);
    and the accounts it may be paid on, when its batch has its tenant's own."""
    v = vault()
    material = json.dumps(
        [
            claimed.provider,
            claimed.config,
            _digest(front),
            _digest(back),
            v.decrypt(claimed.claimed_name_enc, AD_CLAIMED_NAME),
            v.decrypt(claimed.claimed_id_enc, AD_CLAIMED_ID),
            # A tenant with accounts of its own reuses (and waits for) only answers paid on
            # those accounts, never another tenant's. Absent when unrestricted, so every
            # key computed before per-tenant accounts existed stays the same.
            *([sorted(claimed.accounts)] if claimed.accounts else []),
        ],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    # Keyed (HMAC) so the key of a known card cannot be recomputed without the PII key.
    return v.lookup_hash(material) or ""
