"""Helpers for end-to-end tests: a messy manifest, and waiting for a batch to finish."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from db.reports import status_counts
from db.session import session_scope
from idbatch.domain import TERMINAL_STATUSES, JobStatus
from simulator.samples import MANIFEST_COLUMNS, generate_sample

MALFORMED = [
    "BROKEN-1,only-two-columns",
    "BROKEN-2,a.jpg,,名字,12345",  # ID number too short
    ",images/x.jpg,,名字,",  # no external_ref
    "BROKEN-4,,,,",  # no front image
    "BROKEN-5,http://192.168.1.20/card.jpg,,,",  # internal URL
    "BROKEN-6,gopher://example.com/a.jpg,,,",
    "BROKEN-7,a.jpg,b.jpg,c,d,e,f",  # too many columns
    "BROKEN-8,images/does-not-exist.jpg,,,",  # accepted at ingest, rejected by the worker
]


def messy_manifest(out_dir: Path, count: int, seed: int, gbk_every: int = 7) -> dict[str, int]:
    """Generate ``count`` sample rows, re-encode some as GBK, append malformed rows.

    Returns the expected final status counts for the whole manifest.
    """
    rows = generate_sample(out_dir, count, seed=seed)
    lines: list[bytes] = [(",".join(MANIFEST_COLUMNS) + "\r\n").encode()]
    for i, row in enumerate(rows):
        text = ",".join(row.values[c] for c in MANIFEST_COLUMNS) + "\r\n"
        lines.append(text.encode("gbk") if i % gbk_every == 0 else text.encode())
    lines += [(line + "\r\n").encode() for line in MALFORMED]
    (out_dir / "manifest.csv").write_bytes(b"".join(lines))
    expected = Counter(r.expect for r in rows)
    expected["rejected"] += len(MALFORMED)
    return dict(expected)


def wait_terminal(batch_id: int, timeout_s: float = 300.0) -> dict[str, int]:
    """Poll Postgres/SQLite until every job of the batch is terminal (or fail)."""
    deadline = time.monotonic() + timeout_s
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        with session_scope() as session:
            counts = status_counts(session, batch_id)
        if counts and all(JobStatus(s) in TERMINAL_STATUSES for s in counts):
            return counts
        time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} not terminal after {timeout_s}s: {json.dumps(counts)}")
