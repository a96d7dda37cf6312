"""Result files: CSV and JSON lines with the stdlib, Parquet with pyarrow (extra ``parquet``).

Writers take pages of rows as columns (``db.export.column_pages``) and hold one page at
a time: CSV and JSONL write its rows through a buffered file, Parquet writes it as one
record batch (one row group). An ``s3://`` destination is written to a local
temporary file first and uploaded with boto3's managed (multipart) upload, which
streams from disk: memory stays bounded either way.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from idbatch.settings import Settings

FORMATS = ("csv", "jsonl", "parquet")
INT_COLUMNS = frozenset(
    {"job_id", "row_number", "attempts", "billable_calls", "in_doubt_calls", "reused_from"}
)
FLOAT_COLUMNS = frozenset({"similarity"})


class ExportError(ValueError):
    """A format or destination that cannot be written; said in one line."""


Page = list[list[Any]]  # one page of rows as one list per column


def write_csv(pages: Iterable[Page], columns: Sequence[str], path: Path) -> int:
    n = 0
    with path.open("w", encoding="utf-8", newline="", buffering=1 << 20) as fh:
        out = csv.writer(fh)
        out.writerow(columns)
        for page in pages:
            out.writerows(zip(*page, strict=True))
            n += len(page[0])
    return n


def write_jsonl(pages: Iterable[Page], columns: Sequence[str], path: Path) -> int:
    n = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with path.open("w", encoding="utf-8", buffering=1 << 20) as fh:
        for page in pages:
            fh.writelines(
                dumps(dict(zip(columns, row, strict=True))) + "\n" for row in zip(*page, strict=True)
            )
            n += len(page[0])
    return n


def write_parquet(pages: Iterable[Page], columns: Sequence[str], path: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ExportError("Parquet needs pyarrow: pip install 'idbatch[parquet]'") from exc

    def kind(name: str) -> Any:
        if name in INT_COLUMNS:
            return pa.int64()
        if name in FLOAT_COLUMNS:
            return pa.float64()
        return pa.string()

    schema = pa.schema([(name, kind(name)) for name in columns])
    n = 0
    with pq.ParquetWriter(str(path), schema, compression="zstd", use_dictionary=False) as writer:
        for page in pages:  # one row group per page
            arrays = [pa.array(col, type=schema.field(i).type) for i, col in enumerate(page)]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
            n += len(page[0])
    return n


WRITERS = {"csv": write_csv, "jsonl": write_jsonl, "parquet": write_parquet}


def export(pages: Iterable[Page], columns: Sequence[str], fmt: str, out: str, settings: Settings) -> int:
    """Write ``pages`` to ``out`` (a path or ``s3://bucket/key``) as ``fmt``; rows written."""
    if fmt not in WRITERS:
        raise ExportError(f"--format takes {', '.join(FORMATS)}")
    writer = WRITERS[fmt]
    if not out.startswith("s3://"):
        return writer(pages, columns, Path(out))
    from idbatch.storage import s3_allowlist, s3_ref_allowed
    from idbatch.storage.s3 import make_client, parse_s3_url

    # Results hold PII (masked or not): only to buckets allowed for this deployment's data.
    if not s3_ref_allowed(out, s3_allowlist(settings)):
        raise ExportError(f"{out} is not in IDBATCH_S3_ALLOWED")
    bucket, key = parse_s3_url(out)
    fd, name = tempfile.mkstemp(suffix=f".{fmt}")
    os.close(fd)
    try:
        n = writer(pages, columns, Path(name))
        make_client("s3", settings.s3_endpoint_url).upload_file(name, bucket, key)
    finally:
        os.unlink(name)
    return n
