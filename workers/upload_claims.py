"""Claims of an event-driven card, read by the worker from the upload itself (issue 19).

With ``IDBATCH_EVENTS_CLAIMS=worker`` (the default) ``idbatch listen`` sends no HEAD per
upload: an AWS event carries no user metadata, and the worker sends a HEAD of the
front image before every call anyway (``S3Storage.read_object``: size check, then
GET). That HEAD answers with the object's ``x-amz-meta-*`` too, so the claims cost no
S3 request at all here, where at the listener they cost one per event.

``adopt`` runs before the content key is computed (the key covers the claims): for a
job of an events batch that holds no claims yet, it reads them from the front's
metadata (and the back's, when the provider reads the back), else from the card's
``<ref>.json`` sidecar, checks them as a manifest row is checked
(``idbatch.upload_claims.check_claims``), and stores them on the job, encrypted, in a
transaction of their own under the job's lease. A retry then finds them stored and
reads nothing again. A claim that fails the check rejects the job with the reason
before any paid call, as the listener would have rejected the card at ingest.
"""

from __future__ import annotations

from dataclasses import replace

from db.events import store_claims
from db.jobs import Claim
from db.session import connection_scope
from idbatch.domain import BatchKind
from idbatch.event_routes import ROUTED_SOURCE, route_for, routed_source
from idbatch.pii import AD_CLAIMED_ID, AD_CLAIMED_NAME, vault
from idbatch.providers.base import ImageSource
from idbatch.storage.base import ObjectMissing
from idbatch.storage.s3 import S3Storage, make_client, parse_s3_url, s3_url
from idbatch.upload_claims import (
    SIDECAR_MAX_BYTES,
    check_claims,
    claims_of,
    merged,
    short,
    sidecar_claims,
    sidecar_key,
)
from workers.durable import durably
from workers.runtime import Runtime


class Unusable(Exception):
    """The upload's claims cannot be used; the text is the job's rejection reason."""


def wanted(claimed: Claim, front: ImageSource) -> bool:
    """Whether this job's claims are still to be read from its upload."""
    return (
        claimed.kind == BatchKind.EVENTS
        and front.metadata is not None
        and claimed.claimed_name_enc is None
        and claimed.claimed_id_enc is None
    )


def adopt(claimed: Claim, front: ImageSource, back: ImageSource | None, rt: Runtime) -> Claim:
    """The claim with its upload's claims stored on the job; raises Unusable (reject), or
    StorageUnavailable while reading the sidecar (retried like the image store)."""
    sides = [
        (f"metadata of {_name(s.ref)}", claims_of(s.metadata))
        for s in (front, back)
        if s is not None and s.metadata is not None
    ]
    claims, conflict = merged(sides)
    if conflict is not None:
        raise Unusable(conflict)
    where = next((w for w, c in sides if c), sides[0][0])
    if not claims and rt.settings.events_sidecar:
        claims, where = _sidecar(front.ref, rt)
    route = claims.pop("route", None)
    if route is not None:
        _check_route(claimed, front.ref, route, rt)
    if not claims:
        return claimed  # the upload claims nothing: verified without claims
    checked = check_claims(claims, where)
    if isinstance(checked, str):
        raise Unusable(checked)
    v = vault()
    name_enc = v.encrypt(checked.name, AD_CLAIMED_NAME)
    id_enc = v.encrypt(checked.id_number, AD_CLAIMED_ID)
    values: dict[str, object] = {
        "claimed_name_enc": name_enc,
        "claimed_id_enc": id_enc,
        "claimed_id_hash": v.lookup_hash(checked.id_number),
    }
    if checked.external_ref is not None:
        values["external_ref"] = checked.external_ref

    def store() -> bool:
        with connection_scope() as conn:
            return store_claims(conn, claimed.job_id, rt.worker_id, values)

    durably(store, "claims")
    return replace(claimed, claimed_name_enc=name_enc, claimed_id_enc=id_enc)


def _check_route(claimed: Claim, front_ref: str, route: str, rt: Runtime) -> None:
    """Never verify a card by the wrong provider: its routing key must lead to its batch.

    With a rule that routes by key, the listener read the key and chose the batch by it;
    without one, it routed by prefix only. Here, with this worker's rules: a key no rule
    matches means "not for this flow", as at the listener, and a rule naming another
    batch means the listener's and the workers' ``IDBATCH_EVENTS_ROUTES`` differ. A worker
    with no rules trusts a batch a rule chose (``events:<batch>``) and refuses a route key
    on a card of the listener's own batch, which no rule chose.
    """
    bucket, key = parse_s3_url(front_ref)
    routes = rt.settings.events_routes
    rule = route_for(routes, bucket, key, route)
    shown = repr(route[:64])
    if rule is None:
        if not routes and claimed.source.startswith(ROUTED_SOURCE):
            return
        raise Unusable(f"routing key {shown} matches no rule (IDBATCH_EVENTS_ROUTES)")
    if claimed.source != routed_source(rule.batch):
        raise Unusable(
            f"routing key {shown} routes the card to batch {rule.batch!r}, but it was recorded"
            " in another (the listener's and this worker's IDBATCH_EVENTS_ROUTES differ)"
        )


def _sidecar(front_ref: str, rt: Runtime) -> tuple[dict[str, str], str]:
    bucket, key = parse_s3_url(front_ref)
    name = sidecar_key(key)
    if name is None:
        return {}, ""
    where = f"sidecar {_name(name)}"
    storage = S3Storage(make_client("s3", rt.settings.s3_endpoint_url))
    try:
        body, _ = storage.read_object(s3_url(bucket, name), SIDECAR_MAX_BYTES)
    except ObjectMissing:
        return {}, where  # no sidecar: the card claims nothing
    except ValueError as exc:  # over the size limit, told by its HEAD
        raise Unusable(f"{where}: over {SIDECAR_MAX_BYTES} bytes") from exc
    if len(body) > SIDECAR_MAX_BYTES:
        raise Unusable(f"{where}: over {SIDECAR_MAX_BYTES} bytes")
    try:
        return sidecar_claims(body), where
    except ValueError as exc:
        raise Unusable(f"{where}: {exc}") from exc


def _name(ref: str) -> str:
    """The object's key, as the listener names it in its reasons (``s3://bucket/`` off)."""
    return short(parse_s3_url(ref)[1] if ref.startswith("s3://") else ref)
