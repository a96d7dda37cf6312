"""Streaming CSV manifest reader.

Columns (header required, names case-insensitive, order free):

    external_ref   your reference for the card (required, <= 256 chars)
    front_image    path (relative to the manifest), http(s):// URL or s3:// URL (required)
    back_image     same, optional
    name           claimed name, optional
    id_number      claimed ID number, optional; checked locally before anything is sent

Encoding: UTF-8, UTF-8 with BOM, or GBK/GB18030, decided *per physical line*: exports
concatenated from several systems mix encodings, and deciding once for the whole file
would garble every row of the minority encoding. 0x0A never occurs inside a GBK
character, so splitting the bytes on newlines first is safe. A line that is not valid
UTF-8 is GB18030 (a superset of GBK). A line that *is* valid UTF-8 may still be GBK: a
short name such as 史雪 (GBK ``CA B7 D1 A9``) is also the UTF-8 for "ʷѩ". Chinese text in
UTF-8 is made of 3-byte sequences, so when the UTF-8 reading contains 2-byte-range
letters (Latin, IPA, Cyrillic; the middle dot of minority names excepted) and the
GB18030 reading is clean CJK, the line is taken as GB18030. ``encoding=`` forces one
codec for the whole file when the heuristic is not wanted.

The reader never holds the file: rows are yielded one at a time. A bad row is yielded
as a ``RowError`` with its row number, the column and what is wrong, and reading goes on.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from idbatch import fields, images
from idbatch.idnumber import IdNumberError, check
from idbatch.storage import s3_ref_allowed

REQUIRED = ("external_ref", "front_image")
OPTIONAL = ("back_image", "name", "id_number")
ALIASES = {
    "ref": "external_ref",
    "id": "external_ref",
    "front": "front_image",
    "back": "back_image",
    "id_no": "id_number",
    "idnum": "id_number",
    "id_card": "id_number",
    "姓名": "name",
    "身份证号": "id_number",
}
MAX_FIELD = fields.IMAGE_REF_MAX
MAX_NAME = fields.NAME_MAX

csv.field_size_limit(MAX_FIELD * 4)


class ManifestError(ValueError):
    """The manifest as a whole is unusable (no header, no required columns)."""


@dataclass
class ManifestRow:
    row_number: int  # 1-based data row (the header is row 0)
    line: int  # physical line where the row ends
    external_ref: str
    front_image: str
    back_image: str | None
    name: str | None
    id_number: str | None
    encoding: str = "utf-8"


@dataclass
class RowError:
    row_number: int
    line: int
    reason: str
    external_ref: str | None = None
    raw: dict[str, str] = field(default_factory=dict)


MAX_LINE_BYTES = 1024 * 1024  # a manifest line is ~200 bytes; a 200 MB "line" is an attack
REF_PREFIX_BYTES = 4096  # of an over-long line, kept to read its external_ref


def _bounded_lines(stream: BinaryIO | Iterable[bytes], overlong: list[tuple[int, bytes]]) -> Iterator[bytes]:
    """The stream's lines, never holding more than MAX_LINE_BYTES of one line in memory.

    An over-long line is read through and dropped; it is yielded as an empty line and its
    position noted in ``overlong`` (with its first bytes, where its external_ref may still be
    read) so that the reader can reject that row with the reason and the caller's reference.
    """
    readline = getattr(stream, "readline", None)
    if readline is None:
        yield from stream  # an iterable of lines made elsewhere: already split
        return
    number = 0
    while True:
        raw: bytes = readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            overlong.append((number, raw[:REF_PREFIX_BYTES]))
            yield b"\n"
            continue
        yield raw


def _decode_lines(
    stream: Iterable[bytes], encoding: str | None, seen: list[str], lines: list[str] | None = None
) -> Iterator[str]:
    first = True
    for raw in stream:
        if first:
            first = False
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        if encoding is not None:
            text = raw.decode(encoding, errors="replace")
        else:
            text, used = decode_line(raw)
            seen.append(used)
        if lines is not None:
            lines.append(text)  # the physical lines of the record being read
        yield text


_TWO_BYTE_LETTER = re.compile("[\u0080-\u00b6\u00b8-\u07ff]")  # U+0080..U+07FF except U+00B7


def _suspicious_utf8(text: str) -> bool:
    return _TWO_BYTE_LETTER.search(text) is not None


def _clean_cjk(text: str) -> bool:
    return all(
        ch.isascii() or ch == "\u00b7" or "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef"
        for ch in text
    )


def decode_line(raw: bytes) -> tuple[str, str]:
    """Decode one physical line as UTF-8 or GB18030 (see the module docstring)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("gb18030", errors="replace"), "gb18030"
    if raw.isascii() or not _suspicious_utf8(text):
        return text, "utf-8"
    try:
        alt = raw.decode("gb18030")
    except UnicodeDecodeError:
        return text, "utf-8"
    return (alt, "gb18030") if _clean_cjk(alt) else (text, "utf-8")


def read_manifest(
    stream: BinaryIO | Iterable[bytes],
    *,
    encoding: str | None = None,
    allowed_private_hosts: list[str] | None = None,
    s3_allowed: tuple[str, ...] | None = None,
) -> Iterator[ManifestRow | RowError]:
    """Yield one ManifestRow or RowError per data row, in order."""
    seen: list[str] = []
    record_lines: list[str] = []
    overlong: list[tuple[int, bytes]] = []
    lines = _decode_lines(_bounded_lines(stream, overlong), encoding, seen, record_lines)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration as exc:
        raise ManifestError("manifest is empty (no header row)") from exc
    except csv.Error as exc:
        raise ManifestError(f"header row is not valid CSV: {exc}") from exc
    columns = [ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        # The column names are echoed only if they look like names: a file without a header
        # starts with a data row, and its fields (names, ID numbers) must not be printed.
        known = all(h.strip().lower() in (*REQUIRED, *OPTIONAL, *ALIASES) for h in header)
        got = (
            f"; got {header!r}"
            if known
            else f" (the first row has {len(header)} fields; is the header missing?)"
        )
        raise ManifestError(f"header lacks required column(s) {', '.join(missing)}{got}")
    # A column named twice is ambiguous (which value is the claim?): refuse it rather than
    # silently take the first. Only known names are echoed (see above).
    twice = sorted({c for c in columns if columns.count(c) > 1 and c in (*REQUIRED, *OPTIONAL)})
    if twice:
        raise ManifestError(f"header names column(s) {', '.join(twice)} more than once")
    index = {name: columns.index(name) for name in (*REQUIRED, *OPTIONAL) if name in columns}
    row_number = 0
    base = 0  # physical lines read by the readers before this one (see the recovery below)
    while True:
        seen.clear()
        record_lines.clear()
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            row_number += 1
            first = base + reader.line_num - len(record_lines) + 1  # the record's first line
            yield RowError(
                row_number,
                first,
                f"row {row_number} (line {first}): malformed CSV: {exc}",
                external_ref=_readable_ref(record_lines, index["external_ref"]),
            )
            if len(record_lines) > 1:
                # An unterminated quote swallows every line after it into one field, to the
                # end of the file or the field limit: only its first line is the bad row. The
                # lines after it are read again as rows of their own, so none is lost.
                base = first
                again = list(record_lines[1:])
                reader = csv.reader(_replayed(again, lines, record_lines), strict=True)
            continue
        row_number += 1
        line = base + reader.line_num
        if overlong and overlong[-1][0] == line:
            yield RowError(
                row_number,
                line,
                f"row {row_number} (line {line}): line longer than {MAX_LINE_BYTES} bytes",
                external_ref=_readable_ref([decode_line(overlong[-1][1])[0]], index["external_ref"]),
            )
            continue
        if not values or all(not v.strip() for v in values):
            yield RowError(row_number, line, f"row {row_number} (line {line}): empty row")
            continue
        yield _validate(
            values,
            columns,
            index,
            row_number,
            line,
            "gb18030" if "gb18030" in seen else (encoding or "utf-8"),
            allowed_private_hosts or [],
            s3_allowed,
        )


def _replayed(again: list[str], rest: Iterator[str], record_lines: list[str]) -> Iterator[str]:
    """Lines already read once (``again``), then the rest of the file; each noted as read."""
    for text in again:
        record_lines.append(text)
        yield text
    yield from rest  # _decode_lines notes these itself


def _readable_ref(lines: list[str], column: int) -> str | None:
    """The external_ref of a row that is not valid CSV, if its start can still be read plainly."""
    if not lines:
        return None
    parts = lines[0].split(",")
    if len(parts) <= column:
        return None
    ref = parts[column].strip()
    if ref.startswith('"') and ref.endswith('"') and len(ref) > 1:
        ref = ref[1:-1]
    return ref if ref and '"' not in ref and len(ref) <= fields.EXTERNAL_REF_MAX else None


def _field_problem(get: dict[str, str]) -> tuple[str, str] | None:
    for column, value in get.items():
        if len(value) > MAX_FIELD:
            return column, f"value is {len(value)} characters, over {MAX_FIELD}"
        if "\x00" in value:
            return column, "contains a NUL character"
        if "\ufffd" in value:
            return column, "bytes are neither UTF-8 nor GB18030"
    return None


def _validate(
    values: list[str],
    columns: list[str],
    index: dict[str, int],
    row_number: int,
    line: int,
    enc: str,
    allowed: list[str],
    s3_allowed: tuple[str, ...] | None = None,
) -> ManifestRow | RowError:
    if len(values) != len(columns):
        ref = values[index["external_ref"]].strip() if len(values) > index["external_ref"] else None
        return RowError(
            row_number,
            line,
            f"row {row_number} (line {line}): expected {len(columns)} columns, got {len(values)}",
            external_ref=ref or None,
        )
    get = {name: values[i].strip() for name, i in index.items()}
    ref = get["external_ref"]

    def bad(column: str, what: str) -> RowError:
        where = f"row {row_number} (line {line}), column {column}"
        return RowError(row_number, line, f"{where}: {what}", external_ref=ref or None)

    joined = "".join(values)
    # One scan of the whole row first; the per-column loop only runs to name the culprit.
    if len(joined) > MAX_FIELD or "\x00" in joined or "\ufffd" in joined:
        culprit = _field_problem(get)
        if culprit is not None:
            return bad(*culprit)
    if not ref:
        return bad("external_ref", "required, empty")
    if len(ref) > fields.EXTERNAL_REF_MAX:
        return bad("external_ref", f"longer than {fields.EXTERNAL_REF_MAX} characters")
    for column in ("external_ref", "name"):
        if (control := fields.control_character(get.get(column, ""))) is not None:
            return bad(column, f"contains a control character ({control})")
    for column in ("front_image", "back_image"):
        value = get.get(column, "")
        if not value:
            if column == "front_image":
                return bad(column, "required, empty")
            continue
        try:
            kind = images.classify_ref(value)
            if kind == "http":
                images.check_url(value, allowed, resolve=False)
            elif kind == "local" and (why := images.local_ref_problem(value)) is not None:
                return bad(column, why)
            elif kind == "s3" and not s3_ref_allowed(value, s3_allowed):
                return bad(column, "bucket not allowed (IDBATCH_S3_ALLOWED)")
        except images.ImageRefError as exc:
            return bad(column, str(exc))
    name = get.get("name") or None
    if name is not None and len(name) > MAX_NAME:
        return bad("name", f"longer than {MAX_NAME} characters")
    id_number = get.get("id_number") or None
    if id_number is not None:
        try:
            id_number = check(id_number)
        except IdNumberError as exc:
            return bad("id_number", f"{exc} ({exc.code.value})")
    return ManifestRow(
        row_number, line, ref, get["front_image"], get.get("back_image") or None, name, id_number, enc
    )
