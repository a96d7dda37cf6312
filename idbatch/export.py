"""Result files: CSV (Arrow's writer, or the stdlib's without pyarrow), JSON lines with the
stdlib, Parquet with pyarrow (extra ``parquet``).

Writers take pages of rows as columns (``db.export.column_pages``) and hold one page at
a time: CSV writes it as one record batch (or its rows through a buffered file), JSONL
its rows, Parquet one record batch (one row group). An ``s3://`` destination is written to a local
temporary file first and uploaded with boto3's managed (multipart) upload, which
streams from disk: memory stays bounded either way.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from idbatch.settings import Settings

FORMATS = ("csv", "jsonl", "parquet")
INT_COLUMNS = frozenset(
    {"job_id", "row_number", "attempts", "billable_calls", "in_doubt_calls", "reused_from"}
)
FLOAT_COLUMNS = frozenset({"similarity"})


class ExportError(ValueError):
    """A format or destination that cannot be written; said in one line."""


Page = list[Sequence[Any]]  # one page of rows as one sequence per column
Dest = Path | BinaryIO  # a file, or a stream: stdout for ``--out -``
STDOUT = "-"


@contextlib.contextmanager
def _text(dest: Dest, newline: str) -> Iterator[TextIO]:
    """UTF-8 text to a file, or to a binary stream left open (stdout) once flushed."""
    if isinstance(dest, Path):
        with dest.open("w", encoding="utf-8", newline=newline, buffering=1 << 20) as fh:
            yield fh
        return
    fh = io.TextIOWrapper(dest, encoding="utf-8", newline=newline, write_through=False)
    try:
        yield fh
    finally:
        fh.flush()
        fh.detach()


def write_csv(pages: Iterable[Page], columns: Sequence[str], path: Dest) -> int:
    """CSV by Arrow's writer where pyarrow is installed (the ``parquet`` extra), else the stdlib.

    Arrow's is a C++ loop over typed arrays (~3x less CPU a row than ``csv.writer`` on
    this table, ``bench/profile_export.py``); it quotes every string, ends lines with
    ``\n`` and writes a whole float ``100``; the stdlib quotes only where needed, ends
    lines with ``\r\n`` and writes ``100.0``: the same values for any CSV reader (a
    missing value is an empty field either way).
    """
    try:
        import pyarrow.csv as pa_csv
    except ImportError:  # pragma: no cover - depends on the install
        return _write_csv_stdlib(pages, columns, path)
    schema = _schema(columns)
    n = 0
    with pa_csv.CSVWriter(str(path) if isinstance(path, Path) else path, schema) as writer:
        for page in pages:
            writer.write_batch(_batch(page, schema))
            n += len(page[0])
    if not isinstance(path, Path):
        path.flush()
    return n


def _write_csv_stdlib(pages: Iterable[Page], columns: Sequence[str], path: Dest) -> int:
    n = 0
    with _text(path, newline="") as fh:
        out = csv.writer(fh)
        out.writerow(columns)
        for page in pages:
            out.writerows(zip(*page, strict=True))
            n += len(page[0])
    return n


def write_jsonl(pages: Iterable[Page], columns: Sequence[str], path: Dest) -> int:
    n = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with _text(path, newline="\n") as fh:
        for page in pages:
            fh.writelines(
                dumps(dict(zip(columns, row, strict=True))) + "\n" for row in zip(*page, strict=True)
            )
            n += len(page[0])
    return n


def _schema(columns: Sequence[str]) -> Any:
    import pyarrow as pa

    def kind(name: str) -> Any:
        if name in INT_COLUMNS:
            return pa.int64()
        if name in FLOAT_COLUMNS:
            return pa.float64()
        return pa.string()

    return pa.schema([(name, kind(name)) for name in columns])


def _batch(page: Page, schema: Any) -> Any:
    """One page as an Arrow record batch: each column list converted once, in C."""
    import pyarrow as pa

    arrays = [pa.array(col, type=schema.field(i).type) for i, col in enumerate(page)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def write_parquet(pages: Iterable[Page], columns: Sequence[str], path: Dest) -> int:
    if not isinstance(path, Path):
        raise ExportError("Parquet is not written to stdout (--out -): give a file path or s3:// URL")
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ExportError("Parquet needs pyarrow: pip install 'idbatch[parquet]'") from exc

    schema = _schema(columns)
    n = 0
    with pq.ParquetWriter(str(path), schema, compression="zstd", use_dictionary=False) as writer:
        for page in pages:  # one row group per page
            writer.write_batch(_batch(page, schema))
            n += len(page[0])
    return n


WRITERS = {"csv": write_csv, "jsonl": write_jsonl, "parquet": write_parquet}


def check_destination(out: str, settings: Settings) -> None:
    """Refuse, before anything is read or audited, a destination that cannot be written:
    empty, a directory, a missing or read-only folder, an ``s3://`` URL without a bucket
    or outside ``IDBATCH_S3_ALLOWED``. (``export`` checks again: it is called alone too.)"""
    if out == STDOUT:
        return
    if out.startswith("s3://"):
        _s3_destination(out, settings)
        return
    if not out.strip():
        raise ExportError("--out is empty: give a file path, s3://bucket/key or -")
    path = Path(out)
    if path.is_dir():
        raise ExportError(f"--out {out} is a directory: name a file in it")
    folder = path.parent
    if not folder.is_dir():
        raise ExportError(f"--out {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ExportError(f"--out {out}: not writable by this user")


def _s3_destination(out: str, settings: Settings) -> tuple[str, str]:
    from idbatch.storage import s3_allowlist, s3_ref_allowed
    from idbatch.storage.s3 import parse_s3_url

    try:
        bucket, key = parse_s3_url(out)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    # Results hold PII (masked or not): only to buckets allowed for this deployment's data.
    if not s3_ref_allowed(out, s3_allowlist(settings)):
        raise ExportError(f"{out} is not in IDBATCH_S3_ALLOWED")
    return bucket, key


def _private_file(path: Path) -> None:
    """Create (or truncate) the result file readable by its owner only, before a writer
    opens it: results hold PII, masked or revealed, and a umask of 022 would leave them
    world-readable. Writers that open the path themselves (Arrow) keep the mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    finally:
        os.close(fd)


def export(pages: Iterable[Page], columns: Sequence[str], fmt: str, out: str, settings: Settings) -> int:
    """Write ``pages`` to ``out`` (a path, ``s3://bucket/key`` or ``-``) as ``fmt``; rows written.

    ``-`` is stdout, for CSV and JSON lines; Parquet (binary, its footer written last) is
    refused there with an ``ExportError`` before anything is read.
    """
    if fmt not in WRITERS:
        raise ExportError(f"--format takes {', '.join(FORMATS)}")
    writer = WRITERS[fmt]
    if out == STDOUT:
        if fmt == "parquet":  # before the first row: nothing half-written
            raise ExportError("Parquet is not written to stdout (--out -): give a file path or s3:// URL")
        return writer(pages, columns, sys.stdout.buffer)
    if not out.startswith("s3://"):
        path = Path(out)
        _private_file(path)
        return writer(pages, columns, path)
    from idbatch.storage.s3 import make_client

    bucket, key = _s3_destination(out, settings)
    fd, name = tempfile.mkstemp(suffix=f".{fmt}")
    os.close(fd)
    try:
        n = writer(pages, columns, Path(name))
        make_client("s3", settings.s3_endpoint_url).upload_file(name, bucket, key)
    finally:
        os.unlink(name)
    return n
