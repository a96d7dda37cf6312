"""Cards as other services send them, checked by the same rules as a CSV row.

A card's fields go through ``producers.csv_manifest``'s row validation (external_ref,
image refs with the SSRF and S3-bucket checks, claimed name, local ID-number rules), so
a card is accepted or rejected over the API exactly as the same row in a manifest. Only
the image refs differ: the API takes ``https://``, ``s3://`` and inline
``data:image/...;base64,`` images, never a path on our disks. Inline images are written
content-addressed under ``api_image_dir`` and the job refers to them relative to it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from idbatch import fields, images
from idbatch.settings import Settings, private_dir
from producers.csv_manifest import ManifestRow, RowError, _validate

COLUMNS = ["external_ref", "front_image", "back_image", "name", "id_number"]
_INDEX = {name: i for i, name in enumerate(COLUMNS)}
DATA_PREFIX = "data:"
_EXT = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp"}


class CardIn(BaseModel):
    """One card. Images: ``https://…``, ``s3://bucket/key`` or ``data:image/jpeg;base64,…``."""

    model_config = ConfigDict(extra="forbid")

    external_ref: str = Field(min_length=1, max_length=fields.EXTERNAL_REF_MAX, description="your reference")
    front_image: str = Field(min_length=1, max_length=16 * 1024 * 1024)
    back_image: str | None = Field(default=None, max_length=16 * 1024 * 1024)
    name: str | None = Field(default=None, max_length=fields.NAME_MAX, description="claimed name")
    id_number: str | None = Field(default=None, max_length=64, description="claimed ID number")

    @field_validator("external_ref", "name")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        """A TAB, newline or ESC in a reference or name would break exports and terminals."""
        if value is not None and (control := fields.control_character(value)) is not None:
            raise ValueError(f"contains a control character ({control})")
        return value


def image_dir(settings: Settings) -> Path:
    return settings.api_image_dir or settings.data_dir / "api-images"


def batch_source(settings: Settings, tenant: str) -> str:
    """The batch's source: a name inside the image dir, so workers resolve inline refs there."""
    return str(image_dir(settings).resolve() / f"api-{tenant}")


def _store_inline(value: str, settings: Settings) -> str:
    """Decode a data URI, check the image, write it once by digest; the relative ref."""
    head, _, payload = value.partition(",")
    if not head.endswith(";base64") or not head[5:].startswith("image/"):
        raise images.ImageRefError("inline images must be data:image/<type>;base64,<data>")
    if len(payload) > settings.image_max_bytes * 4 // 3 + 4:
        raise images.ImageRefError(f"image is over the {settings.image_max_bytes}-byte limit")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise images.ImageRefError("inline image is not valid base64") from exc
    info = images.inspect(data, settings.image_max_bytes)
    digest = hashlib.sha256(data).hexdigest()
    rel = f"{digest[:2]}/{digest}.{_EXT.get(info.format, 'img')}"
    path = image_dir(settings) / rel
    if not path.exists():
        # Card images are PII: folders 0700 and files 0600 whatever the umask, also when
        # IDBATCH_API_IMAGE_DIR lies outside the private data dir.
        private_dir(image_dir(settings))
        private_dir(path.parent)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        tmp.replace(path)  # atomic: a worker never reads half an image
    return rel


def to_row(
    card: CardIn, row_number: int, settings: Settings, s3_allowed: tuple[str, ...]
) -> ManifestRow | RowError:
    """The card as a manifest row, or the row error naming the field and the fault."""
    values = {
        "external_ref": card.external_ref,
        "front_image": card.front_image,
        "back_image": card.back_image or "",
        "name": card.name or "",
        "id_number": card.id_number or "",
    }
    where = f"card {row_number}"
    for column in ("front_image", "back_image"):
        ref = values[column]
        if not ref:
            continue
        try:
            if ref.startswith(DATA_PREFIX):
                values[column] = _store_inline(ref, settings)
                continue
            kind = images.classify_ref(ref)
        except images.ImageRefError as exc:
            return RowError(
                row_number, row_number, f"{where}, field {column}: {exc}", external_ref=card.external_ref
            )
        if kind == "local":
            why = "local paths are not accepted over the API: use https://, s3:// or a data: URI"
            return RowError(
                row_number, row_number, f"{where}, field {column}: {why}", external_ref=card.external_ref
            )
    row = _validate(
        [values[c] for c in COLUMNS],
        COLUMNS,
        _INDEX,
        row_number,
        row_number,
        "utf-8",
        settings.allowed_private_hosts,
        s3_allowed,
    )
    if isinstance(row, RowError):
        # The CSV wording names a row and a line; over the API it is the card's position.
        reason = row.reason.replace(f"row {row_number} (line {row_number}), column", f"{where}, field", 1)
        return RowError(row.row_number, row.line, reason, row.external_ref)
    return row


def row_problem(row: RowError) -> dict[str, Any]:
    """A rejected card as it appears in a problem+json ``errors`` list."""
    return {"card": row.row_number, "external_ref": row.external_ref, "reason": row.reason}


def ref_of(line: bytes) -> str | None:
    """The external_ref of an NDJSON line that is not a valid card, if it can be read."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: a line nested ~1,000 deep
        return None
    ref = value.get("external_ref") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) and len(ref) <= 256 else None
