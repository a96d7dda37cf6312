"""Result files: CSV and JSON lines with the stdlib, Parquet with pyarrow (extra ``parquet``).

Writers take an iterator of row tuples and hold one page at most: CSV and JSONL write
row by row through a buffered file; Parquet collects ``PARQUET_PAGE`` rows into one
record batch (one row group) at a time. An ``s3://`` destination is written to a local
temporary file first and uploaded with boto3's managed (multipart) upload, which
streams from disk: memory stays bounded either way.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from idbatch.settings import Settings

FORMATS = ("csv", "jsonl", "parquet")
PARQUET_PAGE = 8_192  # rows per row group; memory grows with it (32k rows: +40 MB)
INT_COLUMNS = frozenset(
    {"job_id", "row_number", "attempts", "billable_calls", "in_doubt_calls", "reused_from"}
)
FLOAT_COLUMNS = frozenset({"similarity"})


class ExportError(ValueError):
    """A format or destination that cannot be written; said in one line."""


def write_csv(rows: Iterable[Sequence[Any]], columns: Sequence[str], path: Path) -> int:
    n = 0
    with path.open("w", encoding="utf-8", newline="", buffering=1 << 20) as fh:
        out = csv.writer(fh)
        out.writerow(columns)
        for n, row in enumerate(rows, start=1):  # noqa: B007 - n is the count afterwards
            out.writerow(row)
    return n


def write_jsonl(rows: Iterable[Sequence[Any]], columns: Sequence[str], path: Path) -> int:
    n = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with path.open("w", encoding="utf-8", buffering=1 << 20) as fh:
        for n, row in enumerate(rows, start=1):  # noqa: B007
            fh.write(dumps(dict(zip(columns, row, strict=True))))
            fh.write("\n")
    return n


def write_parquet(rows: Iterable[Sequence[Any]], columns: Sequence[str], path: Path) -> int:
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
    it = iter(rows)
    n = 0
    with pq.ParquetWriter(str(path), schema, compression="zstd", use_dictionary=False) as writer:
        while page := list(islice(it, PARQUET_PAGE)):
            arrays = [
                pa.array(col, type=schema.field(i).type) for i, col in enumerate(zip(*page, strict=True))
            ]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
            n += len(page)
    return n


WRITERS = {"csv": write_csv, "jsonl": write_jsonl, "parquet": write_parquet}


def export(
    rows: Iterable[Sequence[Any]], columns: Sequence[str], fmt: str, out: str, settings: Settings
) -> int:
    """Write ``rows`` to ``out`` (a path or ``s3://bucket/key``) as ``fmt``; rows written."""
    if fmt not in WRITERS:
        raise ExportError(f"--format takes {', '.join(FORMATS)}")
    writer = WRITERS[fmt]
    if not out.startswith("s3://"):
        return writer(rows, columns, Path(out))
    from idbatch.storage.s3 import make_client, parse_s3_url

    bucket, key = parse_s3_url(out)
    fd, name = tempfile.mkstemp(suffix=f".{fmt}")
    os.close(fd)
    try:
        n = writer(rows, columns, Path(name))
        make_client("s3", settings.s3_endpoint_url).upload_file(name, bucket, key)
    finally:
        os.unlink(name)
    return n
