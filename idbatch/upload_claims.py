"""What an uploaded card image says about its card: claims in S3 user metadata or a sidecar.

An upload may carry its external ref, the claimed name and ID number, and a routing
key: as user metadata (``x-amz-meta-external-ref``, ``-name``, ``-id-number``,
``-route``; values may be RFC 2047 encoded words, which is how SDKs send non-ASCII
metadata) or in a small JSON sidecar object ``<ref>.json`` with the same keys.

Two readers use this module (issue 19). ``idbatch listen`` reads the claims when it has
the metadata anyway (MinIO's events carry it; a HEAD when a rule routes by key, or with
``IDBATCH_EVENTS_CLAIMS=listener``). Otherwise the *worker* reads them from the HEAD it
makes of the front image before every call (``workers.upload_claims``): the same
metadata, no extra S3 request. Both check the claims with ``check_claims``, which holds
them to the manifest's rules (lengths, NULs, the ID number's checksum), so a card's
claims are judged the same whoever reads them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from email.header import decode_header, make_header

from idbatch import fields
from idbatch.idnumber import IdNumberError, check

# The naming convention that pairs a card's two uploads: `<ref>-front.jpg`, `<ref>-back.png`.
CONVENTION = re.compile(r"^(?P<ref>.+)-(?P<side>front|back)\.(?:jpe?g|png|bmp)$", re.IGNORECASE)
CLAIM_KEYS = ("external_ref", "name", "id_number", "route")
SIDECAR_MAX_BYTES = 64 * 1024
_LIMITS = {"external_ref": fields.EXTERNAL_REF_MAX, "name": fields.NAME_MAX, "id_number": 64}


@dataclass(frozen=True)
class Claims:
    """Claims that passed ``check_claims``: the ID number normalized (full-width digits, x)."""

    external_ref: str | None = None
    name: str | None = None
    id_number: str | None = None


def short(key: str, limit: int = 256) -> str:
    """A key as reasons name it: whole, or its last ``limit`` characters."""
    return key if len(key) <= limit else "…" + key[-(limit - 1) :]


def sidecar_key(key: str) -> str | None:
    """The ``<ref>.json`` sidecar of a card image's key, if the key follows the convention."""
    match = CONVENTION.match(key)
    return f"{match['ref']}.json" if match else None


def _decoded(value: str) -> str:
    """An RFC 2047 encoded word (``=?UTF-8?B?5byg5LiJ?=``) as text; plain values unchanged."""
    if "=?" not in value:
        return value
    return str(make_header(decode_header(value)))


def claims_of(metadata: dict[str, str]) -> dict[str, str]:
    """The claim fields present in S3 user metadata (``-`` or ``_`` spellings)."""
    out: dict[str, str] = {}
    for key, value in metadata.items():
        name = key.lower().replace("-", "_")
        if name in CLAIM_KEYS and value.strip():
            out[name] = _decoded(value).strip()
    return out


def sidecar_claims(body: bytes) -> dict[str, str]:
    """A ``<ref>.json`` sidecar's claims; raises ValueError (the reason) when unusable."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError("sidecar is not UTF-8 JSON") from exc
    if not isinstance(payload, dict):
        raise ValueError("sidecar is not a JSON object")
    out: dict[str, str] = {}
    for key in CLAIM_KEYS:
        value = payload.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"sidecar field {key} is not a string")
        if value.strip():
            out[key] = value.strip()
    return out


def merged(sides: list[tuple[str, dict[str, str]]]) -> tuple[dict[str, str], str | None]:
    """One card's claims from its sides' (where, claims); and the conflict, if two differ."""
    found: dict[str, str] = {}
    for _, claims in sides:
        for key, value in claims.items():
            if key in found and found[key] != value:
                return found, f"front and back claim different {key} values"
            found.setdefault(key, value)
    return found, None


def check_claims(claims: dict[str, str], where: str) -> Claims | str:
    """The claims held to a manifest row's rules; or the reason, naming ``where`` and the field.

    The reason never quotes the value: it may be an ID number.
    """
    for key in ("external_ref", "name", "id_number"):
        value = claims.get(key)
        if value is not None and (why := fields.problem(value, _LIMITS[key])) is not None:
            return f"{where}, field {key}: value {why}"
        if value is not None and "\ufffd" in value:
            return f"{where}, field {key}: bytes are neither UTF-8 nor GB18030"
        if value is not None and key != "id_number" and (control := fields.control_character(value)):
            return f"{where}, field {key}: contains a control character ({control})"
    number = claims.get("id_number")
    if number is not None:
        try:
            number = check(number)
        except IdNumberError as exc:
            return f"{where}, field id_number: {exc} ({exc.code.value})"
    return Claims(claims.get("external_ref"), claims.get("name"), number)
