"""CSV manifests: encodings, CRLF, quoting, and a precise reason for every bad row."""

from __future__ import annotations

import datetime as dt
import io
import random

import pytest

from producers.csv_manifest import ManifestError, ManifestRow, RowError, read_manifest
from simulator.cards import make_id_number

HEADER = "external_ref,front_image,back_image,name,id_number\n"
ID1 = make_id_number(random.Random(1), dt.date(1985, 3, 4), male=True)
ID2 = make_id_number(random.Random(2), dt.date(1991, 11, 30), male=False)


def rows(data: bytes, **kw: object) -> list[ManifestRow | RowError]:
    return list(read_manifest(io.BytesIO(data), **kw))  # type: ignore[arg-type]


def test_utf8_bom_crlf_and_quoted_fields() -> None:
    text = (
        HEADER
        + f'A1,a.jpg,,"张, 三",{ID1}\r\n'
        + f'"A2","b ""x"".jpg","c.jpg","李四",{ID2}\r\n'
        + f'"A3",d.jpg,,"李\n四",{ID2}\r\n'
    )
    out = rows(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert [type(r) for r in out] == [ManifestRow, ManifestRow, RowError]
    first, second, third = out
    assert isinstance(first, ManifestRow) and isinstance(second, ManifestRow)
    assert first.name == "张, 三" and first.back_image is None and first.id_number == ID1
    assert second.front_image == 'b "x".jpg' and second.back_image == "c.jpg"
    assert second.row_number == 2
    # a quoted newline is read as part of its field (one row, not two), and a name holds none
    assert isinstance(third, RowError) and third.row_number == 3 and third.external_ref == "A3"
    assert third.reason.endswith("column name: contains a control character (U+000D)")


def test_gbk_file_and_mixed_encoding_lines() -> None:
    gbk = (HEADER + f"G1,a.jpg,,王小明,{ID1}\n").encode("gbk")
    utf = f"U1,b.jpg,,赵丽,{ID2}\n".encode()
    out = rows(gbk + utf)
    assert all(isinstance(r, ManifestRow) for r in out)
    assert [r.name for r in out if isinstance(r, ManifestRow)] == ["王小明", "赵丽"]
    assert [r.encoding for r in out if isinstance(r, ManifestRow)] == ["gb18030", "utf-8"]


@pytest.mark.parametrize("name", ["史雪", "王小明", "阿依古丽·买买提", "欧阳娜娜"])
def test_gbk_lines_that_are_also_valid_utf8_are_read_as_gbk(name: str) -> None:
    # 史雪 in GBK is CA B7 D1 A9, which is also valid UTF-8 ("ʷѩ").
    data = HEADER.encode() + f"G1,a.jpg,,{name},{ID1}\n".encode("gbk") + f"U1,a.jpg,,{name},\n".encode()
    out = rows(data)
    assert [r.name for r in out if isinstance(r, ManifestRow)] == [name, name]


def test_forced_encoding() -> None:
    data = (HEADER + f"G1,a.jpg,,王小明,{ID1}\n").encode("gb18030")
    (row,) = rows(data, encoding="gb18030")
    assert isinstance(row, ManifestRow) and row.name == "王小明"


def test_every_bad_row_is_reported_with_row_column_and_reason() -> None:
    body = [
        f"OK1,a.jpg,,张三,{ID1}",
        "SHORT,a.jpg",  # wrong column count
        f",a.jpg,,张三,{ID1}",  # empty external_ref
        f"NOFRONT,,,张三,{ID1}",
        "BADID,a.jpg,,张三,110105194912310022",
        f"SSRF,http://10.0.0.5/x.jpg,,张三,{ID1}",
        f"LOOP,http://localhost:8080/x.jpg,,张三,{ID1}",
        f"SCHEME,ftp://example.com/x.jpg,,张三,{ID1}",
        f"NUL,a\x00.jpg,,张三,{ID1}",
        "",  # empty line: csv yields nothing for it
        ",,,,",
        f"OK2,https://images.example.com/x.jpg,,张三,{ID2}",
        f"DOCNET,https://203.0.113.10/x.jpg,,张三,{ID2}",  # TEST-NET-3 is not global
    ]
    out = rows((HEADER + "\n".join(body) + "\n").encode())
    errors = {r.external_ref or f"row{r.row_number}": r.reason for r in out if isinstance(r, RowError)}
    assert "expected 5 columns, got 2" in errors["SHORT"]
    assert "column external_ref: required" in errors["row3"]
    assert "column front_image: required, empty" in errors["NOFRONT"]
    assert "column id_number: check character" in errors["BADID"]
    assert "inside the network" in errors["SSRF"]
    assert "internal" in errors["LOOP"]
    assert "unsupported scheme" in errors["SCHEME"]
    assert "NUL" in errors["NUL"]
    assert "inside the network" in errors["DOCNET"]
    assert "empty row" in errors["row10"]
    ok = [r.external_ref for r in out if isinstance(r, ManifestRow)]
    assert ok == ["OK1", "OK2"]
    # every physical data row is accounted for, numbered without gaps
    assert [r.row_number for r in out] == list(range(1, len(out) + 1))
    assert "row 2 (line 3)" in errors["SHORT"]


def test_unterminated_quote_at_end_is_one_rejected_row() -> None:
    out = rows((HEADER + f"OK,a.jpg,,张三,{ID1}\n" + 'BAD,"a.jpg,,x,y\n').encode())
    assert isinstance(out[0], ManifestRow)
    assert isinstance(out[1], RowError) and "malformed CSV" in out[1].reason


def test_an_unterminated_quote_mid_file_loses_no_row_after_it() -> None:
    """The quote swallows the rest of the file into one field: only its own line is the bad
    row, every line after it is read again as its own row, and each keeps its reference."""
    data = (
        HEADER
        + f"R1,a.jpg,,张三,{ID1}\n"
        + 'R2,"b.jpg,,x,y\n'
        + f'R3,c.jpg,,"李\n四",{ID2}\n'  # well-formed CSV: a quoted field over two lines
        + 'R4,"d.jpg,,x,y\n'
        + f"R5,e.jpg,,王五,{ID1}\n"
    ).encode()
    out = rows(data)
    assert [(type(r).__name__, r.external_ref, r.row_number) for r in out] == [
        ("ManifestRow", "R1", 1),
        ("RowError", "R2", 2),
        ("RowError", "R3", 3),  # one row, refused for its name's newline (a name holds none)
        ("RowError", "R4", 4),
        ("ManifestRow", "R5", 5),
    ]
    bad = [r for r in out if isinstance(r, RowError) and r.external_ref != "R3"]
    assert [r.line for r in bad] == [3, 6] and all("malformed CSV" in r.reason for r in bad)
    assert "(line 3)" in bad[0].reason and "(line 6)" in bad[1].reason
    r3 = out[2]
    assert isinstance(r3, RowError) and r3.line == 5
    assert r3.reason == "row 3 (line 5), column name: contains a control character (U+000A)"


def test_an_over_long_line_keeps_its_reference() -> None:
    from producers.csv_manifest import MAX_LINE_BYTES

    long_row = "R2,b.jpg,," + "y" * (MAX_LINE_BYTES + 5) + ",\n"
    data = (HEADER + "R1,a.jpg,,x,\n" + long_row + "R3,c.jpg,,z,\n").encode()
    out = rows(data)
    assert [(type(r).__name__, r.external_ref) for r in out] == [
        ("ManifestRow", "R1"),
        ("RowError", "R2"),
        ("ManifestRow", "R3"),
    ]
    assert isinstance(out[1], RowError) and f"longer than {MAX_LINE_BYTES} bytes" in out[1].reason


def test_header_problems_refuse_the_manifest() -> None:
    with pytest.raises(ManifestError, match="front_image"):
        rows(b"external_ref,name\nA,b\n")
    with pytest.raises(ManifestError, match="empty"):
        rows(b"")


@pytest.mark.parametrize(
    "header",
    ["external_ref,front_image,front_image", "external_ref,front_image,ref", "ref,front,external_ref"],
)
def test_a_column_named_twice_refuses_the_manifest(header: str) -> None:
    """Two values for one column: which is the card's? Refused, never the first silently."""
    with pytest.raises(ManifestError, match="more than once"):
        rows(f"{header}\nA,a.jpg,B\n".encode())


def test_column_aliases_and_order() -> None:
    (row,) = rows(f"身份证号,front,ref\n{ID1},a.jpg,R1\n".encode())
    assert isinstance(row, ManifestRow)
    assert (row.external_ref, row.front_image, row.id_number) == ("R1", "a.jpg", ID1)


def test_reader_streams_without_reading_everything() -> None:
    def endless() -> object:
        yield HEADER.encode()
        n = 0
        while True:
            n += 1
            yield f"R{n},a.jpg,,,\n".encode()

    reader = read_manifest(endless())  # type: ignore[arg-type]
    first = [next(reader) for _ in range(5)]
    assert [r.row_number for r in first] == [1, 2, 3, 4, 5]
