"""What one uploaded object is: a card side (or not), where it is routed, what it claims.

``SideReader.side(upload)`` runs on the listener's pool threads: it matches the naming
convention (``<ref>-front.*`` / ``<ref>-back.*``), checks the size, reads the object's
user metadata when the event carried it (MinIO), or asks S3 (HEAD, else its
``<ref>.json`` sidecar) when a rule routes by key or ``IDBATCH_EVENTS_CLAIMS=listener``;
routes it by bucket/prefix and routing key (``IDBATCH_EVENTS_ROUTES``), and validates
the claims as a manifest row. Without either, the claims are the worker's to read
(``workers.upload_claims``), from the HEAD it sends before every call. Anything wrong
becomes the side's ``problem``: its card is then a rejected job naming it. S3 failing
transiently raises ``Deferred``.
"""

from __future__ import annotations

import threading
from typing import Any

from db.ingest import standing_batch
from idbatch import fields
from idbatch.event_routes import EventRoute, route_for, routed_source
from idbatch.settings import Settings
from idbatch.storage import s3_allowlist
from idbatch.storage.s3 import error_code
from idbatch.upload_claims import short
from producers.csv_manifest import RowError
from producers.event_parse import CONVENTION, SIDECAR_MAX_BYTES, Upload, claims_of, sidecar_claims, validated
from producers.pairing import Side


class Deferred(Exception):
    """S3 could not answer now: the message stays in the queue and comes back."""


class SideReader:
    def __init__(self, settings: Settings, s3: Any, default_batch: int) -> None:
        self.settings = settings
        self.s3 = s3
        self.default_batch = default_batch
        self._s3_allowed = s3_allowlist(settings)
        self._batches: dict[str, int] = {}
        self._lock = threading.Lock()
        # Whether the listener itself asks S3 for claims (HEAD, sidecar): a rule that routes
        # by key needs the metadata before the job exists; otherwise, with
        # IDBATCH_EVENTS_CLAIMS=worker, the worker reads them from the HEAD it makes anyway.
        self.reads_uploads = settings.events_claims == "listener" or any(
            r.route is not None for r in settings.events_routes
        )

    def side(self, up: Upload) -> Side:
        match = CONVENTION.match(up.key)
        side_name = match["side"].lower() if match else None
        ref = match["ref"] if match else up.key
        side = Side(0, up, f"{up.bucket}/{ref}" if match else None, side_name, short(ref))
        problems: list[str] = []
        what = f"{side_name or 'front'} image"
        if (control := fields.control_character(up.key)) is not None:
            problems.append(f"object key contains a control character ({control})")
        if len(ref) > fields.EXTERNAL_REF_MAX:
            problems.append(f"object key's card reference is over {fields.EXTERNAL_REF_MAX} characters")
        if up.key.endswith("/"):
            problems.append("folder placeholder object, not an image")
        elif up.size == 0:
            problems.append(f"{what} is empty (0 bytes)")
        elif up.size > self.settings.image_max_bytes:
            problems.append(f"{what} is {up.size} bytes, over the {self.settings.image_max_bytes}-byte limit")
        # the sidecar belongs to the card and is read with its front; a back brings metadata only
        claims, where, problem = self._claims(up, ref if side_name == "front" else None)
        if problem:
            problems.append(problem)
        route = claims.pop("route", None)
        rule = route_for(self.settings.events_routes, up.bucket, up.key, route)
        side.batch_id = self._batch_for(rule)
        if route is not None and rule is None:
            problems.append(f"routing key {route[:64]!r} matches no rule (IDBATCH_EVENTS_ROUTES)")
        if claims:
            checked = validated(
                claims,
                ref=side.ref,
                image_url=up.url,
                where=where,
                allowed_private_hosts=self.settings.allowed_private_hosts,
                s3_allowed=self._s3_allowed,
            )
            if isinstance(checked, RowError):
                problems.append(checked.reason)
            else:
                side.external_ref = checked.external_ref if "external_ref" in claims else None
                side.name, side.id_number = checked.name, checked.id_number
        side.problem = "; ".join(problems) or None
        return side

    def _claims(self, up: Upload, ref: str | None) -> tuple[dict[str, str], str, str | None]:
        """(claims, where they came from, why they are unusable): metadata, else the sidecar."""
        metadata = up.metadata
        if metadata is None and not self.reads_uploads:
            return {}, "", None  # read by the worker (workers.upload_claims)
        if metadata is None and not up.key.endswith("/"):
            metadata = self._head(up)
        claims = claims_of(metadata or {})
        if claims or ref is None or not self.settings.events_sidecar or not self.reads_uploads:
            return claims, f"metadata of {short(up.key)}", None
        sidecar = f"{ref}.json"
        where = f"sidecar {short(sidecar)}"
        try:
            body = self.s3.get_object(Bucket=up.bucket, Key=sidecar)["Body"].read(SIDECAR_MAX_BYTES + 1)
        except Exception as exc:
            if missing(exc):
                return {}, where, None
            raise Deferred(type(exc).__name__) from exc
        if len(body) > SIDECAR_MAX_BYTES:
            return {}, where, f"{where}: over {SIDECAR_MAX_BYTES} bytes"
        try:
            return sidecar_claims(body), where, None
        except ValueError as exc:
            return {}, where, f"{where}: {exc}"

    def _head(self, up: Upload) -> dict[str, str]:
        try:
            return dict(self.s3.head_object(Bucket=up.bucket, Key=up.key).get("Metadata", {}))
        except Exception as exc:
            if missing(exc):
                return {}  # deleted since: the worker rejects the job with the reason
            raise Deferred(type(exc).__name__) from exc

    def _batch_for(self, rule: EventRoute | None) -> int:
        if rule is None:
            return self.default_batch
        with self._lock:
            if rule.batch not in self._batches:
                source = routed_source(rule.batch)
                self._batches[rule.batch] = standing_batch(source, rule.provider, rule.config)
            return self._batches[rule.batch]


def missing(exc: Exception) -> bool:
    """S3 says the object is not there (or not ours to read): retrying cannot help."""
    return error_code(exc) in {"404", "NoSuchKey", "NotFound", "403", "AccessDenied", "Forbidden"}
