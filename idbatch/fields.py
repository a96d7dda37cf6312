"""What the database can store, checked before anything is inserted.

Postgres refuses a NUL in text, any string longer than its ``varchar(n)``, and text that
is not valid UTF-8 (a lone surrogate from a broken decode). A row it refuses inside a
COPY takes the whole chunk down, so every value is checked here first, on SQLite and
Postgres alike (the embedded mode must give the same outcome as production). The model
columns use these constants, and a test holds the two equal.
"""

from __future__ import annotations

import re

EXTERNAL_REF_MAX = 256
NAME_MAX = 64
IMAGE_REF_MAX = 4096
REASON_MAX = 2000
_CUT = "…"
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1 (TAB, CR, LF, ESC)


def problem(value: str, max_len: int) -> str | None:
    """Why ``value`` cannot be stored in a column of ``max_len`` characters, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if len(value) > max_len:
        return f"is {len(value)} characters, over {max_len}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains characters that are not valid Unicode (lone surrogates)"
    return None


def control_character(value: str) -> str | None:
    """The first control character (C0, DEL, C1) in ``value`` as ``U+XXXX``, or None.

    A reference or a name holds none: a TAB or newline breaks the exports' and reports'
    rows, and an ESC would reach a terminal as an escape sequence.
    """
    found = CONTROL.search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


def storable(value: str | None, max_len: int) -> str | None:
    """``value`` as a column of ``max_len`` can hold it: NULs, other control characters
    and lone surrogates replaced by U+FFFD, cut with an ellipsis. For what must be kept
    whatever it holds (the ``external_ref`` of a rejected row, a reason): the record
    stays, readable, and an export of it carries no TAB, newline or ESC."""
    if value is None:
        return None
    clean = CONTROL.sub("\ufffd", value).encode("utf-8", "replace").decode("utf-8")
    return clean if len(clean) <= max_len else clean[: max_len - len(_CUT)] + _CUT
