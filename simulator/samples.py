"""Sample manifests of synthetic cards (demo, tests, benchmarks): images, registry, CSV.

Every card is drawn by ``simulator.cards``; defects of every kind can be mixed in so a
sample exercises the whole pipeline (bad rows, missing files, claims that disagree ...).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from faker import Faker

from simulator.cards import (
    BACK_VARIANTS,
    DEFAULT_DEFECTS,
    IMAGE_VARIANTS,
    REGISTRY_VARIANTS,
    RegistryEntry,
    Truth,
    make_identity,
    render,
    write_registry,
)

MANIFEST_COLUMNS = ("external_ref", "front_image", "back_image", "name", "id_number")


@dataclass
class SampleRow:
    """One manifest row and what the report should say about it."""

    values: dict[str, str]
    expect: str  # passed / negative / rejected
    why: str


def generate_sample(
    out_dir: Path,
    count: int = 200,
    *,
    seed: int | None = None,
    defects: bool = True,
    with_back: bool = True,
    variant_weights: dict[str, float] | None = None,
    defect_kinds: Iterable[str] | None = None,
) -> list[SampleRow]:
    """Write ``count`` manifest rows, their images, ``registry.jsonl`` and ``manifest.csv``.

    With ``defects`` a few rows of every kind a real backfill meets are mixed in: bad
    rows, missing and non-image files, internal URLs, claims that do not match the card,
    identities the registry disagrees with, and drawn-in warnings. ``defect_kinds``
    replaces the default mix (any of ``DEFAULT_DEFECTS``, ``IMAGE_VARIANTS``,
    ``REGISTRY_VARIANTS``); a tenth of ``count`` at most are defects either way.
    """
    rng = random.Random(seed)
    faker = Faker("zh_CN")
    faker.seed_instance(rng.randrange(2**31))
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    registry: list[RegistryEntry] = []
    rows: list[SampleRow] = []

    plan: list[str] = []
    if defects:
        plan = list(DEFAULT_DEFECTS if defect_kinds is None else defect_kinds)
        plan = plan[: max(0, count // 10)]
    plan += ["ok"] * (count - len(plan))
    rng.shuffle(plan)

    for index, kind in enumerate(plan, start=1):
        ref = f"CARD-{index:06d}"
        ident = make_identity(rng, faker)
        variants = [kind] if kind in IMAGE_VARIANTS + REGISTRY_VARIANTS else []
        back_variants = [v for v in variants if v in BACK_VARIANTS]
        variants = [v for v in variants if v not in BACK_VARIANTS]
        if kind == "expired":
            # Issued 2000-2009 for ten years: long past its end date.
            ident.valid_from = dt.date(rng.randrange(2000, 2010), rng.randrange(1, 13), rng.randrange(1, 29))
            ident.valid_to = ident.valid_from.replace(year=ident.valid_from.year + 10)
        front_name, back_name = f"images/{ref}-front.jpg", f"images/{ref}-back.jpg"
        front_truth = Truth("front", ident, variants)
        if kind == "not_id_card":
            (out_dir / front_name).write_bytes(render(None, rng=rng))
        elif kind == "not_an_image":
            (out_dir / front_name).write_bytes(b"this is a text file, not a JPEG\n")
        elif kind != "missing_file":
            (out_dir / front_name).write_bytes(render(front_truth, rng=rng))
        if with_back and kind not in ("missing_file", "not_an_image", "not_id_card"):
            (out_dir / back_name).write_bytes(render(Truth("back", ident, back_variants), rng=rng))
        if kind != "unknown_id":
            registry.append(
                RegistryEntry(
                    id_number=ident.id_number,
                    name=ident.name if kind != "name_mismatch" else faker.name(),
                    portrait_seed=ident.portrait_seed
                    if kind != "other_portrait"
                    else ident.portrait_seed + 1,
                )
            )
        values = {
            "external_ref": ref,
            "front_image": front_name,
            "back_image": back_name
            if with_back and kind not in ("missing_file", "not_an_image", "not_id_card")
            else "",
            "name": ident.name,
            "id_number": ident.id_number,
        }
        expect, why = "passed", "valid card, enrolled identity"
        if kind == "claim_name":
            values["name"] = faker.name()
            expect, why = "negative", "claimed name differs from the card"
        elif kind == "claim_id":
            other = make_identity(rng, faker)
            values["id_number"] = other.id_number
            expect, why = "negative", "claimed ID number differs from the card"
        elif kind == "bad_checksum":
            last = values["id_number"][-1]
            values["id_number"] = values["id_number"][:-1] + ("0" if last != "0" else "1")
            expect, why = "rejected", "claimed ID number fails its checksum"
        elif kind == "empty_front":
            values["front_image"] = ""
            expect, why = "rejected", "front_image column is empty"
        elif kind == "internal_url":
            values["front_image"] = "http://169.254.169.254/latest/meta-data/card.jpg"
            expect, why = "rejected", "front image URL points inside the network"
        elif kind in ("missing_file", "not_an_image"):
            expect, why = "rejected", kind.replace("_", " ")
        elif kind != "ok":
            expect, why = "negative", kind.replace("_", " ")
        rows.append(SampleRow(values, expect, why))

    write_registry(out_dir / "registry.jsonl", registry)
    with (out_dir / "manifest.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow(row.values)
    with (out_dir / "expected.json").open("w", encoding="utf-8") as fh:
        json.dump(
            [{"external_ref": r.values["external_ref"], "expect": r.expect, "why": r.why} for r in rows],
            fh,
            ensure_ascii=False,
            indent=0,
        )
    return rows


def write_copies_manifest(out: Path, jobs: int, *, sample: int = 8, seed: int = 11) -> Path:
    """A manifest of ``jobs`` rows over byte-distinct copies of a few enrolled cards.

    Bytes appended after the JPEG end marker change an image's content key, not what the
    card shows: every row is its own billable question (none waits for or reuses another's
    answer), as in a real backfill, without rendering thousands of cards. Used by the
    throughput benchmark and its CI-sized test.
    """
    rows = [
        r
        for r in generate_sample(out, sample, seed=seed, defects=False, with_back=False)
        if r.expect == "passed"
    ]
    lines = [",".join(MANIFEST_COLUMNS)]
    for i in range(jobs):
        values = rows[i % len(rows)].values
        image = f"images/copy-{i:07d}.jpg"
        (out / image).write_bytes((out / values["front_image"]).read_bytes() + f"copy {i}".encode())
        row = dict(values, external_ref=f"COPY-{i:07d}", front_image=image, back_image="")
        lines.append(",".join(row[c] for c in MANIFEST_COLUMNS))
    path = out / "copies.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

