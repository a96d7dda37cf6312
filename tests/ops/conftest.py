"""Fixtures for operating tests: the durability stack (Postgres, simulator, gateway) plus a
real ``idbatch worker`` process on Redis with metrics and JSON logs as asked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.embedded import current_app
from tests.conftest import Env
from tests.durability.conftest import Stack, pg_db, stack

__all__ = ["pg_db", "stack"]  # the durability fixtures, used here as they are

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(pred: Callable[[], bool], what: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s  # a hang guard, not a performance assertion
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.1)


def start_worker(log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", *args],
        env=dict(os.environ),
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.returncode


@pytest.fixture
def on_redis(stack: Stack, env: Env, redis_url: str) -> Iterator[Stack]:
    """The stack on real Redis with a sweeper thread in this process (beat's part)."""
    from workers.sweeper import sweeper_thread

    # requeue_after_s: the durability stack's 0.2 s is shorter than a worker's start-up on a
    # slow box; its prefetched messages would be re-published as lost, and the duplicate
    # (harmless) tasks would show in the event and metrics counts these tests check.
    stack.settings = env(broker_url=redis_url, sweep_interval_s="0.3", requeue_after_s="30")
    with sweeper_thread(stack.settings, current_app(stack.settings)):
        yield stack
