"""Front and back become one card: recording upload sides and resolving cards (issue 19).

``record_sides`` is one transaction for whatever a poll brought: the new object
versions go into the ledger (``event_object``; a version already there is a duplicate
and changes nothing), and every card that now has both sides becomes one job. A side
whose partner has not arrived stays *pending* in the ledger.

``sweep_expired`` resolves the cards whose pairing window has ended: a lone front is a
one-sided job when the batch's provider reads only a front (AceData, FaceID), and a
rejected job naming the missing back when it reads both (Tencent OCR, the Aliyun
vendor: ``Provider.two_sided``); a lone back is a rejected job naming the missing front
(and the job its front already went to, when it came too late). It runs from the
listener's loop and from ``idbatch events sweep``: expiry is driven by the ledger's
timestamps in Postgres, so a restarted listener picks up exactly where one stopped.

Objects that do not follow the naming convention are not paired: each is its own job,
as ``idbatch listen`` has always done.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from db.events import (
    LedgerRow,
    allot_rows,
    batch_flows,
    expired_cards,
    insert_objects,
    lock_cards,
    pending_sides,
    resolve,
    resolved_sides,
)
from db.ingest import default_inserter
from db.session import session_scope
from dispatch.publish import Publisher, after_commit
from idbatch.domain import JobStatus
from idbatch.pii import associated_data, vault
from idbatch.storage.base import ObjectInfo
from producers.csv_manifest import ManifestRow, RowError
from producers.s3 import ObjectRow, RejectedObjects, object_job_values
from producers.submit import storable_rows

AD_EVENT_NAME = associated_data("event_object", "claimed_name_enc")
AD_EVENT_ID = associated_data("event_object", "claimed_id_enc")
SWEEP_PAGE = 500


@dataclass
class Side:
    """One new object version, routed and checked, before it enters the ledger."""

    batch_id: int
    upload: ObjectInfo
    card_key: str | None  # "bucket/<ref>" under the naming convention, else None
    side: str | None
    ref: str
    external_ref: str | None = None
    name: str | None = None
    id_number: str | None = None
    problem: str | None = None

    def ledger_row(self, now: dt.datetime) -> dict[str, Any]:
        v = vault()
        return {
            "batch_id": self.batch_id,
            "url": self.upload.url,
            "etag": self.upload.etag,
            "size": self.upload.size,
            "card_key": self.card_key,
            "side": self.side,
            "external_ref": self.external_ref,
            "claimed_name_enc": v.encrypt(self.name, AD_EVENT_NAME),
            "claimed_id_enc": v.encrypt(self.id_number, AD_EVENT_ID),
            "problem": self.problem,
            "seen_at": now,
        }


@dataclass
class Outcome:
    jobs: int = 0  # queued jobs made
    rejected: int = 0
    paired: int = 0  # two-sided jobs among them
    pending: int = 0  # new sides now waiting for their partner
    duplicates: int = 0  # object versions the ledger already held
    published: list[int] = field(default_factory=list)


@dataclass
class _Planned:
    batch_id: int
    item: ManifestRow | RowError
    ledger_ids: list[int]


def two_sided(provider: str) -> bool:
    """Whether ``provider`` reads the back as well: its adapter's ``two_sided``."""
    from idbatch.providers.acedata import AceDataProvider
    from idbatch.providers.aliyun_market import AliyunMarketProvider
    from idbatch.providers.tencent_faceid import TencentFaceIdProvider
    from idbatch.providers.tencent_ocr import TencentOcrProvider

    adapters: dict[str, type[Any]] = {
        "acedata": AceDataProvider,
        "tencent_faceid": TencentFaceIdProvider,
        "tencent_ocr": TencentOcrProvider,
        "aliyun_market": AliyunMarketProvider,
    }
    return bool(adapters[provider].two_sided)


def _info(row: LedgerRow) -> ObjectInfo:
    return ObjectInfo(row.url, row.url.split("/", 3)[-1], row.size, row.etag)


def _ref_of(card_key: str) -> str:
    return card_key.split("/", 1)[1]


def _claims(rows: list[LedgerRow]) -> tuple[str | None, str | None, str | None, list[str]]:
    """(external_ref, name, id number, conflicts) of a card from its sides' ledger rows."""
    v = vault()
    found: dict[str, str] = {}
    conflicts: list[str] = []
    for row in rows:
        for label, value in (
            ("external_ref", row.external_ref),
            ("name", v.decrypt(row.claimed_name_enc, AD_EVENT_NAME)),
            ("id_number", v.decrypt(row.claimed_id_enc, AD_EVENT_ID)),
        ):
            if value is None:
                continue
            if label in found and found[label] != value:
                conflicts.append(f"front and back claim different {label} values")
            found.setdefault(label, value)
    return found.get("external_ref"), found.get("name"), found.get("id_number"), conflicts


def _card(
    batch_id: int, card_key: str, front: LedgerRow | None, back: LedgerRow | None, lone: str | None
) -> _Planned:
    """The job of one card: two-sided, one-sided, or rejected with every reason."""
    rows = [r for r in (front, back) if r is not None]
    ref = _ref_of(card_key)
    external_ref, name, id_number, problems = _claims(rows)
    problems = [p for r in rows if r.problem for p in [r.problem]] + problems
    if lone is not None:
        problems.insert(0, lone)
    problems = list(dict.fromkeys(problems))  # both sides may carry the same problem (a routing key)
    ids = [r.id for r in rows]
    if problems:
        item: ManifestRow | RowError = RejectedObjects(
            0,
            0,
            "; ".join(problems),
            external_ref or ref,
            front=front.url if front else None,
            back=back.url if back else None,
        )
        return _Planned(batch_id, item, ids)
    assert front is not None
    objects = tuple(_info(r) for r in rows)
    item = ObjectRow(
        0, 0, external_ref or ref, front.url, back.url if back else None, name, id_number, objects=objects
    )
    return _Planned(batch_id, item, ids)


def _single(side: Side, ledger_id: int) -> _Planned:
    """An object outside the naming convention: its own job, as the listener always made."""
    info = side.upload
    if side.problem is not None:
        item: ManifestRow | RowError = RejectedObjects(
            0, 0, side.problem, side.external_ref or side.ref, front=info.url
        )
    else:
        item = ObjectRow(
            0, 0, side.external_ref or side.ref, info.url, None, side.name, side.id_number, objects=(info,)
        )
    return _Planned(side.batch_id, item, [ledger_id])


def _extra_side(row: LedgerRow) -> _Planned:
    """A second version of a side while the first still waits: accounted for, not used."""
    ref = _ref_of(str(row.card_key))
    reason = f"second {row.side} image for {ref}; the first one received is used"
    front, back = (row.url, None) if row.side == "front" else (None, row.url)
    return _Planned(
        row.batch_id, RejectedObjects(0, 0, reason, row.external_ref or ref, front=front, back=back), [row.id]
    )


def _pair_up(
    grouped: dict[tuple[int, str], list[LedgerRow]],
    *,
    expire: bool,
    window_s: float,
    flows: dict[int, tuple[str, dict[str, Any]]],
    earlier: dict[tuple[int, str, str], int],
) -> list[_Planned]:
    planned: list[_Planned] = []
    for (batch_id, card_key), rows in grouped.items():
        fronts = [r for r in rows if r.side == "front"]
        backs = [r for r in rows if r.side == "back"]
        planned += [_extra_side(r) for r in fronts[1:] + backs[1:]]
        front, back = (fronts[0] if fronts else None), (backs[0] if backs else None)
        if front is not None and back is not None:
            planned.append(_card(batch_id, card_key, front, back, None))
        elif expire and front is not None:
            provider = flows[batch_id][0]
            lone = None
            if two_sided(provider):
                lone = (
                    f"no back image within the {window_s:g} s pairing window "
                    f"({_ref_of(card_key)}-back.<ext>); {provider} reads both sides"
                )
            planned.append(_card(batch_id, card_key, front, None, lone))
        elif expire and back is not None:
            lone = (
                f"back image without a front within the {window_s:g} s pairing window "
                f"({_ref_of(card_key)}-front.<ext>)"
            )
            if (batch_id, card_key, "front") in earlier:
                lone += f"; the card's front came earlier and is job {earlier[(batch_id, card_key, 'front')]}"
            planned.append(_card(batch_id, card_key, None, back, lone))
    return planned


def _write(session: Any, planned: list[_Planned], publish: Publisher, now: dt.datetime, out: Outcome) -> None:
    """Insert the planned jobs (row numbers drawn per batch) and point their ledger rows at them."""
    if not planned:
        return
    by_batch: dict[int, list[_Planned]] = defaultdict(list)
    for p in planned:
        by_batch[p.batch_id].append(p)
    flows = batch_flows(session, by_batch)
    inserter = default_inserter(session)
    links: list[tuple[int, int]] = []
    queued: list[int] = []
    for batch_id in sorted(by_batch):  # the batch rows are the last locks taken
        group = by_batch[batch_id]
        provider, config = flows[batch_id]
        first = allot_rows(session, batch_id, len(group))
        for offset, p in enumerate(group):
            p.item.row_number = first + offset
        values = storable_rows([object_job_values(batch_id, p.item, provider, config) for p in group])
        ids = inserter(session, values)
        for job_id, p, v in zip(ids, group, values, strict=True):
            links += [(oid, job_id) for oid in p.ledger_ids]
            if v["status"] == JobStatus.QUEUED:
                queued.append(job_id)
                out.jobs += 1
                out.paired += int(isinstance(p.item, ObjectRow) and p.item.back_image is not None)
            else:
                out.rejected += 1
    resolve(session, links, now)
    after_commit(session, publish, queued)
    out.published += queued


def record_sides(
    sides: list[Side], publish: Publisher, now: dt.datetime, extra: list[_Planned] | None = None
) -> Outcome:
    """One transaction: new sides into the ledger, complete cards into jobs (see the module docstring)."""
    out = Outcome()
    with session_scope() as session:
        lock_cards(session, [f"{s.batch_id}:{s.card_key}" for s in sides if s.card_key])
        unique = {(s.upload.url, s.upload.etag): s for s in sides}
        new = insert_objects(session, [s.ledger_row(now) for s in unique.values()])
        out.duplicates = len(sides) - len(new)
        planned = list(extra or [])
        cards: set[tuple[int, str]] = set()
        for version, ledger_id in new.items():
            side = unique[version]
            if side.card_key is None:
                planned.append(_single(side, ledger_id))
            else:
                cards.add((side.batch_id, side.card_key))
        grouped: dict[tuple[int, str], list[LedgerRow]] = defaultdict(list)
        for row in pending_sides(session, cards):
            grouped[(row.batch_id, str(row.card_key))].append(row)
        made = _pair_up(grouped, expire=False, window_s=0, flows={}, earlier={})
        resolved = {oid for p in made for oid in p.ledger_ids}
        out.pending = sum(
            1 for rows in grouped.values() for r in rows if r.id not in resolved and r.id in new.values()
        )
        _write(session, planned + made, publish, now, out)
    return out


def poison_job(batch_id: int, reason: str, message_id: str) -> _Planned:
    """A message that can never become a job is still accounted for, as a rejected one."""
    return _Planned(
        batch_id, RowError(0, 0, f"poison SQS message: {reason}", external_ref=f"sqs:{message_id}"), []
    )


def sweep_expired(publish: Publisher, now: dt.datetime, window_s: float, limit: int = SWEEP_PAGE) -> Outcome:
    """Resolve up to ``limit`` cards whose window ended before ``now``; call again while it finds some."""
    out = Outcome()
    with session_scope() as session:
        cards = expired_cards(session, now - dt.timedelta(seconds=window_s), limit)
        if not cards:
            return out
        lock_cards(session, [f"{b}:{c}" for b, c in cards])
        grouped: dict[tuple[int, str], list[LedgerRow]] = defaultdict(list)
        for row in pending_sides(session, cards):
            grouped[(row.batch_id, str(row.card_key))].append(row)
        flows = batch_flows(session, {b for b, _ in cards})
        planned = _pair_up(
            grouped, expire=True, window_s=window_s, flows=flows, earlier=resolved_sides(session, cards)
        )
        _write(session, planned, publish, now, out)
    return out


def sweep_all(publish: Publisher, now: dt.datetime, window_s: float) -> Outcome:
    """Resolve every card whose window ended before ``now``, page by page (listener and beat)."""
    total = Outcome()
    while True:
        out = sweep_expired(publish, now, window_s)
        total.jobs, total.rejected, total.paired = (
            total.jobs + out.jobs,
            total.rejected + out.rejected,
            total.paired + out.paired,
        )
        total.published += out.published
        if out.jobs + out.rejected == 0:
            return total
