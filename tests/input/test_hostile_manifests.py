"""Bad input never loses a manifest (issue 18): the same row accounting on Postgres and SQLite.

Every input row ends as exactly one job, a bad row as a rejected job with a precise
reason; no exception escapes ingest; the embedded database (SQLite) and production's
(Postgres, COPY) give the same outcome row by row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from db.migrate import upgrade
from db.models import Job
from db.session import session_scope
from idbatch.domain import JobStatus
from producers.csv_manifest import read_manifest
from producers.submit import submit_manifest
from tests.conftest import Env, fresh_database

pytestmark = pytest.mark.integration

GOOD_ID = "310104199003071790"  # synthetic (simulator.cards.make_id_number): checksum, region, date valid
Outcome = list[tuple[int | None, str | None, str, str]]


@pytest.fixture
def databases(env: Env, tmp_path: Path) -> Iterator[dict[str, str]]:
    with fresh_database("idbatch_in") as pg:
        urls = {"postgres": pg, "sqlite": f"sqlite:///{tmp_path / 'hostile.db'}"}
        for url in urls.values():
            upgrade(url)
        yield urls


def _ingest(env: Env, url: str, data: bytes) -> Outcome:
    settings = env(database_url=url)
    result = submit_manifest(io.BytesIO(data), source="hostile.csv", settings=settings, enqueue=False)
    with session_scope() as session:
        jobs = session.scalars(
            select(Job).where(Job.batch_id == result.batch_id).order_by(Job.row_number)
        ).all()
        outcome = [
            (j.row_number, j.external_ref, j.status.value, (j.last_error or "").split(":")[0]) for j in jobs
        ]
    assert result.rows == len(jobs)
    return outcome


def _both(env: Env, databases: dict[str, str], data: bytes) -> Outcome:
    outcomes = {name: _ingest(env, url, data) for name, url in databases.items()}
    assert outcomes["postgres"] == outcomes["sqlite"]
    return outcomes["postgres"]


def _manifest(*rows: str, header: str = "external_ref,front_image,back_image,name,id_number") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode("utf-8")


def test_a_nul_in_external_ref_rejects_that_row_only(env: Env, databases: dict[str, str]) -> None:
    data = _manifest("OK-1,a.jpg,,,", "BAD\x00REF,b.jpg,,,", "OK-3,c.jpg,,,")
    outcome = _both(env, databases, data)
    assert [s for _, _, s, _ in outcome] == ["queued", "rejected", "queued"]
    assert outcome[1][3] == "row 2 (line 3), column external_ref"
    assert outcome[1][1] is not None and "\x00" not in outcome[1][1]  # kept, storable


def test_a_300_character_external_ref_rejects_that_row_only(env: Env, databases: dict[str, str]) -> None:
    data = _manifest("OK-1,a.jpg,,,", "R" * 300 + ",b.jpg,,,", "OK-3,c.jpg,,,")
    outcome = _both(env, databases, data)
    assert [s for _, _, s, _ in outcome] == ["queued", "rejected", "queued"]
    assert outcome[1][1] is not None and len(outcome[1][1]) <= 256


def test_a_birth_date_in_the_future_is_rejected_before_anything_is_sent(
    env: Env, databases: dict[str, str]
) -> None:
    future = "11010120990307003"  # born 2099-03-07; checksum appended below
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(d) * w for d, w in zip(future, weights, strict=True)) % 11]
    data = _manifest(f"F-1,a.jpg,,张三,{future}{check}", f"OK-2,b.jpg,,李四,{GOOD_ID}")
    outcome = _both(env, databases, data)
    assert [s for _, _, s, _ in outcome] == ["rejected", "queued"]
    with session_scope() as session:
        reason = session.scalar(select(Job.last_error).where(Job.external_ref == "F-1"))
    assert reason is not None and "in the future" in reason and future not in reason


def test_a_header_only_manifest_is_a_finished_empty_batch(env: Env, databases: dict[str, str]) -> None:
    from rich.console import Console

    from app.embedded import wait_for_batch

    settings = env(database_url=databases["sqlite"])
    result = submit_manifest(io.BytesIO(_manifest()), source="h.csv", settings=settings, enqueue=False)
    assert result.rows == 0
    assert wait_for_batch(result.batch_id, Console(quiet=True), timeout_s=5)  # no wait for a total of 0


def test_a_malformed_csv_row_keeps_its_readable_external_ref() -> None:
    data = _manifest("GOOD-1,a.jpg,,,", 'BAD-2,"unterminated')
    items = list(read_manifest(io.BytesIO(data)))
    assert items[1].external_ref == "BAD-2"
    assert "malformed CSV" in getattr(items[1], "reason", "")


FIELD = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=250, max_size=320),
    st.sampled_from(["\x00", '"', '""', "\r", "\n", "\r\n", ",", "a.jpg", GOOD_ID, "张三", "\ufeff"]),
    st.binary(max_size=20).map(lambda b: b.decode("gb18030", "replace")),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(FIELD, min_size=1, max_size=6), min_size=1, max_size=8), gbk=st.booleans())
def test_hostile_manifests_give_one_job_per_row_and_the_same_outcome_on_both(
    env: Env, databases: dict[str, str], rows: list[list[str]], gbk: bool
) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["external_ref", "front_image", "back_image", "name", "id_number"])
    for row in rows:
        writer.writerow(row)
    text = buf.getvalue()
    data = text.encode("gb18030", "replace") if gbk else text.encode("utf-8", "surrogatepass")
    outcome = _both(env, databases, data)  # no exception escaped, same rows on both
    assert [r for r, *_ in outcome] == list(range(1, len(outcome) + 1))  # every row, once, in order
    for _, ref, status, reason in outcome:
        assert status in (JobStatus.QUEUED, JobStatus.REJECTED)
        assert status == JobStatus.QUEUED or reason.startswith("row ")
        assert ref is None or ("\x00" not in ref and len(ref) <= 256)


def test_control_characters_in_ref_or_name_reject_that_row_only(env: Env, databases: dict[str, str]) -> None:
    """TAB, ESC and a quoted newline: each names its column and character; the rest go on."""
    data = _manifest(
        "OK-1,a.jpg,,,", "BAD\tREF,b.jpg,,,", "R\x1b[2J,c.jpg,,,", 'OK-4,d.jpg,,"Li\nLei",', "OK-5,e.jpg,,,"
    )
    outcome = _both(env, databases, data)
    assert [s for _, _, s, _ in outcome] == ["queued", "rejected", "rejected", "rejected", "queued"]
    assert [where for _, _, _, where in outcome[1:4]] == [
        "row 2 (line 3), column external_ref",
        "row 3 (line 4), column external_ref",
        "row 4 (line 6), column name",  # the line its quoted newline ends on
    ]
    settings = env(database_url=databases["sqlite"])
    result = submit_manifest(io.BytesIO(data), source="hostile.csv", settings=settings, enqueue=False)
    with session_scope() as session:
        reasons = session.scalars(
            select(Job.last_error).where(Job.batch_id == result.batch_id).order_by(Job.row_number)
        ).all()
    assert reasons[1].endswith("contains a control character (U+0009)")
    assert reasons[2].endswith("contains a control character (U+001B)")
    assert reasons[3].endswith("contains a control character (U+000A)")
