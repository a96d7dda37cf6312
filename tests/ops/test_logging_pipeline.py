"""One pipeline for ours and Celery's lines: JSON for both, PII redacted in both, the
sweep's routine lines at DEBUG."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from idbatch.logging import configure, get_logger
from idbatch.pii import ID_NUMBER_RE

SAMPLE_ID = "110105197202141392"  # synthetic: simulator.cards made it (valid checksum)


@pytest.fixture
def restore() -> Iterator[None]:
    yield
    configure("INFO", False)


def lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_foreign_and_own_lines_are_json_and_redacted(
    capsys: pytest.CaptureFixture[str], restore: None
) -> None:
    configure("INFO", json_logs=True)
    logging.getLogger("celery.app.trace").info("Task idbatch.verify[x] raised: bad card %s", SAMPLE_ID)
    get_logger("workers.test").info("own line", name="张三", detail=f"card {SAMPLE_ID}")
    out = lines(capsys.readouterr().err)
    assert [r["logger"] for r in out] == ["celery.app.trace", "workers.test"]
    text = json.dumps(out, ensure_ascii=False)
    assert not ID_NUMBER_RE.search(text) and "张三" not in text
    assert out[1]["name"] == "<redacted>"


def test_a_traceback_is_redacted_too(capsys: pytest.CaptureFixture[str], restore: None) -> None:
    configure("INFO", json_logs=True)
    try:
        raise ValueError(f"no such card {SAMPLE_ID}")
    except ValueError:
        logging.getLogger("kombu").exception("failed")
    (record,) = lines(capsys.readouterr().err)
    assert "ValueError" in str(record["exception"]) and not ID_NUMBER_RE.search(json.dumps(record))


def test_sweep_lines_are_debug(capsys: pytest.CaptureFixture[str], restore: None) -> None:
    sweep = "Scheduler: Sending due task sweep (idbatch.sweep)"
    configure("INFO", json_logs=True)
    logging.getLogger("celery.beat").info(sweep)
    logging.getLogger("celery.app.trace").info("Task idbatch.sweep[1] succeeded in 0.01s: 0")
    logging.getLogger("celery.beat").info("Scheduler: Sending due task webhooks (idbatch.webhooks.sweep)")
    logging.getLogger("celery.app.trace").info("Task idbatch.fire_schedules[3] succeeded in 0.01s: 0")
    logging.getLogger("celery.app.trace").info("Task idbatch.verify[2] succeeded in 0.2s: 'passed'")
    assert [r["event"] for r in lines(capsys.readouterr().err)] == [
        "Task idbatch.verify[2] succeeded in 0.2s: 'passed'"
    ]
    configure("DEBUG", json_logs=True)
    logging.getLogger("celery.beat").info(sweep)
    (record,) = lines(capsys.readouterr().err)
    assert record["event"] == sweep and record["level"] == "debug"
