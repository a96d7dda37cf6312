"""The ingest loop: stable idempotency keys, and the pipelined chunk writer.

Keys are compared with keys stored months earlier, so the fast key maker must give
exactly the digest of the documented JSON text. The writer overlaps reading with
committing; what must not change is order, commit-before-publish, and that an error on
either side surfaces instead of losing rows silently.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from db.migrate import upgrade
from db.models import Batch, Job
from db.session import session_scope
from idbatch.domain import BatchKind
from idbatch.pii import vault
from producers.csv_manifest import ManifestRow, RowError
from producers.keys import _KeyMaker, idempotency_key
from producers.submit import _ChunkWriter, create_batch, ingest_rows
from tests.conftest import Env, fresh_database


def _reference_key(provider: str, config: dict[str, Any], *fields: str | None) -> str:
    material = json.dumps(
        [provider, config, *fields], ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )
    return vault().keyed("idempotency-key", hashlib.sha256(material.encode()).hexdigest())


@pytest.mark.parametrize(
    ("provider", "config", "fields"),
    [
        ("acedata", {}, ("a.jpg", "b.jpg", "张三", "11010119900307803X")),
        ("acedata", {}, ("a.jpg", None, None, None)),
        ("tencent_faceid", {"z": 1, "a": [1, "é"]}, ("s3://b/k.jpg", None, "欧阳·娜娜", None)),
        ("aliyun_market", {"side": "face"}, ('q"uo\\te.jpg', "tab\tnew\nline\x01.jpg", "Ünï", "x")),
        ("acedata", {}, ("emoji-😀.jpg", "\u2028sep.jpg", "", "")),
    ],
)
def test_fast_key_is_the_documented_json_digest(
    provider: str, config: dict[str, Any], fields: tuple[str | None, ...]
) -> None:
    front, back, name, id_number = fields
    assert front is not None
    expected = _reference_key(provider, config, *fields)
    assert _KeyMaker(provider, config)(front, back, name, id_number) == expected
    assert idempotency_key(provider, config, front, back, name, id_number) == expected


def test_keys_differ_when_any_field_moves() -> None:
    make = _KeyMaker("acedata", {})
    assert make("a", "b", None, None) != make("a", None, "b", None)
    assert make("a", None, None, None) != _KeyMaker("acedata", {"x": 1})("a", None, None, None)


# --- the chunk writer ----------------------------------------------------------------------


def test_single_chunk_is_written_inline() -> None:
    seen: list[tuple[str, list[int]]] = []

    def write(values: list[dict[str, Any]]) -> None:
        seen.append((threading.current_thread().name, [v["n"] for v in values]))

    with _ChunkWriter(write) as writer:
        writer.put([{"n": 1}, {"n": 2}])
    assert seen == [(threading.current_thread().name, [1, 2])]


def test_many_chunks_are_written_in_order_on_one_writer_thread() -> None:
    seen: list[tuple[str, int]] = []

    def write(values: list[dict[str, Any]]) -> None:
        seen.append((threading.current_thread().name, values[0]["n"]))

    with _ChunkWriter(write) as writer:
        for n in range(50):
            writer.put([{"n": n}])
    assert [n for _, n in seen] == list(range(50))
    assert {name for name, _ in seen} == {"ingest-writer"}


def test_writer_error_stops_the_reader_and_reaches_the_caller() -> None:
    handed: list[int] = []
    written: list[int] = []
    release = threading.Event()

    def write(values: list[dict[str, Any]]) -> None:
        n = values[0]["n"]
        if n == 3:
            release.set()
            raise RuntimeError("database said no")
        written.append(n)

    def feed() -> None:
        with _ChunkWriter(write, depth=1) as writer:
            for n in range(1000):
                writer.put([{"n": n}])
                handed.append(n)
                if n > 3:
                    release.wait(5)

    with pytest.raises(RuntimeError, match="database said no"):
        feed()
    assert written == [0, 1, 2]
    assert len(handed) < 1000  # the reader stopped instead of reading the whole input


def test_reader_error_still_commits_what_was_handed_over() -> None:
    written: list[int] = []

    def write(values: list[dict[str, Any]]) -> None:
        written.append(values[0]["n"])

    def rows() -> Iterator[int]:
        yield from range(5)
        raise OSError("connection reset while streaming the manifest")

    def feed() -> None:
        with _ChunkWriter(write) as writer:
            for n in rows():
                writer.put([{"n": n}])

    with pytest.raises(OSError, match="connection reset"):
        feed()
    assert written == [0, 1, 2, 3, 4]


def test_reader_error_before_a_second_chunk_commits_the_first() -> None:
    written: list[int] = []

    def feed() -> None:
        with _ChunkWriter(lambda v: written.append(v[0]["n"])) as writer:
            writer.put([{"n": 7}])
            raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        feed()
    assert written == [7]


def test_when_both_sides_fail_the_readers_error_is_raised() -> None:
    def write(_: list[dict[str, Any]]) -> None:
        raise RuntimeError("database down too")

    def feed() -> None:
        with _ChunkWriter(write) as writer:
            writer.put([{"n": 1}])
            raise OSError("manifest stream broke")

    with pytest.raises(OSError, match="manifest stream broke"):
        feed()


# --- the loop on Postgres, several chunks ------------------------------------------------


@pytest.fixture(params=["postgres", "sqlite"])
def db_env(request: pytest.FixtureRequest, env: Env) -> Iterator[str]:
    """Postgres (COPY path) and the embedded SQLite (INSERT..RETURNING, writer thread too)."""
    if request.param == "sqlite":
        url = env().database_url
        upgrade(url)
        yield url
        return
    with fresh_database("idbatch_ingest") as url:
        upgrade(url)
        env(database_url=url)
        yield url


def _items(n: int) -> Iterator[ManifestRow | RowError]:
    for i in range(1, n + 1):
        if i % 10 == 0:
            yield RowError(i, i + 1, f"row {i}: bad", external_ref=f"R{i}")
        else:
            yield ManifestRow(i, i + 1, f"R{i}", f"img/{i}-f.jpg", None, "张三", None)


def test_every_row_is_committed_before_its_chunk_is_published(db_env: str) -> None:
    """Publishing checks, from another connection, that the ids it sends exist."""
    observer = create_engine(db_env)
    published: list[list[int]] = []

    def publish(job_ids: list[int]) -> None:
        with observer.connect() as conn:
            visible = conn.scalar(select(func.count()).select_from(Job).where(Job.id.in_(job_ids)))
        assert visible == len(job_ids)
        published.append(job_ids)

    batch_id = create_batch("test", BatchKind.BACKFILL, "acedata", {})
    result = ingest_rows(batch_id, _items(257), "acedata", {}, publish=publish, chunk_size=16)
    observer.dispose()

    assert (result.rows, result.queued, result.rejected) == (257, 232, 25)
    assert len(published) == 17  # ceil(257 / 16) chunks, each with queued rows
    flat = [job_id for chunk in published for job_id in chunk]
    assert flat == sorted(flat) and len(set(flat)) == 232
    with session_scope() as session:
        rows = session.execute(select(Job.row_number).where(Job.batch_id == batch_id).order_by(Job.id)).all()
        batch = session.get(Batch, batch_id)
        assert batch is not None
        assert [r.row_number for r in rows] == list(range(1, 258))
        assert (batch.total_rows, batch.ingest_complete) == (257, True)


def test_a_failing_chunk_leaves_the_batch_incomplete_and_earlier_chunks_committed(db_env: str) -> None:
    batch_id = create_batch("test", BatchKind.BACKFILL, "acedata", {})
    calls = {"n": 0}

    def publish(job_ids: list[int]) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("broker went away")

    with pytest.raises(ConnectionError):
        ingest_rows(batch_id, _items(200), "acedata", {}, publish=publish, chunk_size=20)
    with session_scope() as session:
        count = session.scalar(select(func.count()).select_from(Job).where(Job.batch_id == batch_id))
        complete = session.scalar(select(Batch.ingest_complete).where(Batch.id == batch_id))
        # The third chunk committed before its publish failed; the sweeper re-publishes it.
        assert count == 60
        assert complete is False
