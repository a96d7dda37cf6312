"""The CSV writers (Arrow's and the stdlib's) write the same values; streams stay open."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from idbatch.export import ExportError, _write_csv_stdlib, write_csv, write_jsonl, write_parquet

COLUMNS = ("job_id", "name", "error", "similarity")
PAGES = [
    [(1, 2, 3), ("张*", "", None), ('a, "quoted"\nline', "plain", None), (91.5, None, 0.1)],
    [(4,), ("欧阳**",), ("\r\n,",), (100.0,)],
]


def _read(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_arrow_and_stdlib_csv_read_back_the_same(tmp_path: Path) -> None:
    arrow, stdlib = tmp_path / "a.csv", tmp_path / "s.csv"
    assert write_csv(iter(PAGES), COLUMNS, arrow) == _write_csv_stdlib(iter(PAGES), COLUMNS, stdlib) == 4
    a, s = _read(arrow.read_bytes()), _read(stdlib.read_bytes())
    assert [r[:3] for r in a] == [r[:3] for r in s]
    # floats: the same value, a whole one written "100" by Arrow, "100.0" by the stdlib
    floats = [[float(r[3]) if r[3] else None for r in rows[1:]] for rows in (a, s)]
    assert floats[0] == floats[1] == [91.5, None, 0.1, 100.0]
    assert a[0] == list(COLUMNS) and a[1] == ["1", "张*", 'a, "quoted"\nline', "91.5"]
    assert a[4][:3] == ["4", "欧阳**", "\r\n,"]


def test_writers_to_a_stream_leave_it_open() -> None:
    for writer in (write_csv, _write_csv_stdlib, write_jsonl):
        stream = io.BytesIO()
        assert writer(iter(PAGES), COLUMNS, stream) == 4
        assert not stream.closed and stream.getvalue()
    with pytest.raises(ExportError, match="stdout"):
        write_parquet(iter(PAGES), COLUMNS, io.BytesIO())
