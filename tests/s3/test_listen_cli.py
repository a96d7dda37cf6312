"""``idbatch listen`` stops on SIGTERM as a container stop sends it: what is in flight is
committed and deleted, and the summary is printed (it exited 143 with nothing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from idbatch.settings import Settings
from idbatch.storage.s3 import make_client
from tests.conftest import Env
from tests.s3.test_event_pairing import Uploads

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_commits_what_is_in_flight_and_prints_the_summary(
    s3env: Settings, env: Env, s3: Any, bucket: str, tmp_path: Path
) -> None:
    settings = env(events_wait_s=1, events_pair_window_s=600)
    sqs = make_client("sqs", settings.sqs_endpoint_url)
    queue = sqs.create_queue(QueueName=f"cli-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    up = Uploads(s3, sqs, bucket, queue)
    up.put_all([(f"cli/K{i}-{side}.jpg", b"\xff\xd8img", {}) for i in range(3) for side in ("front", "back")])
    up.send(list(up.bodies.values()))
    out = tmp_path / "listen.out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "listen", "--queue-url", queue],
        env=dict(os.environ),
        cwd=ROOT,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # the six events are received and committed meanwhile
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.read_text()
    assert "stopping: committing what is in flight" in text
    assert "is the in-memory broker" in text  # the tests' broker: said, not refused (jobs are recorded)
    summary = json.loads(text[text.index("{") :])
    assert summary["received"] == 6 and summary["paired"] == 3 and summary["deleted"] == 6
