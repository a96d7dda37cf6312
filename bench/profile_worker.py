"""Where a worker's CPU goes: py-spy over bench/quota.py's limiter run, summed per frame.

The method (issue 17), committed instead of the profiles:

1. ``py-spy record --subprocesses --format raw --nonblocking`` runs ``bench/quota.py``
   (one worker process unless told otherwise, ``--no-baseline``), sampling every Python
   process it starts: the worker, the simulator, the gateway, beat. Idle threads (a
   thread blocked in ``recv`` or sleeping for its slot) are not sampled: py-spy records
   only threads holding or wanting the CPU unless ``--idle`` is given.
2. This script keeps the stacks of the worker processes (``app.cli worker``), and prints
   JSON: the share of the worker's samples under each of a few known buckets
   (Celery/kombu per message, SQLAlchemy, psycopg, httpx, structlog/logging, JSON,
   base64, TC3 signing, the limiter; a sample belongs to the innermost frame that
   falls in a bucket, so Celery at the root of every task does not own its callees) and
   the 25 heaviest frames by self time. Imports (start-up) are their own bucket: the
   benchmark's ``cpu_ms_per_job`` includes each worker's start-up.

    .venv/bin/pip install 'py-spy>=0.4,<0.5'
    python bench/profile_worker.py -- --provider tencent_faceid --quota 50 --jobs 1500 --workers 1

py-spy needs ptrace rights over its children (it starts them, so the default
``kernel.yama.ptrace_scope=1`` allows it). The raw profile stays in a temporary folder.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUCKETS = {
    "celery_kombu": ("celery/", "kombu/", "billiard/"),
    "sqlalchemy": ("sqlalchemy/",),
    "psycopg": ("psycopg/",),
    "httpx_httpcore": ("httpx/", "httpcore/", "h11/"),
    "logging": ("structlog/", "logging/", "idbatch/logging"),
    "json": ("json/",),
    "base64": ("base64",),
    "tc3_signing": ("tc3",),
    "redis_limiter": ("redis/", "workers/ratelimit", "workers/gate"),
    "prometheus": ("prometheus_client/",),
    "opentelemetry": ("opentelemetry/",),
    "pydantic": ("pydantic",),
}


def bench_json(stdout: str) -> object:
    """bench/quota.py's JSON: the last top-level object (py-spy writes its notices there too)."""
    start = stdout.rfind("\n{\n")
    try:
        value, _ = json.JSONDecoder().raw_decode(stdout[start + 1 :] if start >= 0 else stdout)
    except json.JSONDecodeError:
        return stdout[-2000:]
    return value


OURS = ("(workers/", "(idbatch/", "(db/", "(dispatch/", "(producers/", "(app/")


def _owner(frames: list[str]) -> str:
    """The innermost bucket frame owns a sample, unless our own code runs below it.

    Without that second rule a sample of our code (the verdict, the vault, building rows)
    under Celery's task frames, with no library frame of its own, was charged to Celery.
    """
    if any("importlib" in f for f in frames):
        return "importlib"  # start-up, whatever module is being imported
    for i in range(len(frames) - 1, -1, -1):
        name = next((n for n, needles in BUCKETS.items() if any(x in frames[i] for x in needles)), None)
        if name is not None:
            if any(any(o in f for o in OURS) for f in frames[i + 1 :]):
                break
            return name
    return "own_code_and_stdlib"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--keep", type=Path, help="also copy py-spy's raw stacks to this file")
    parser.add_argument(
        "bench_args", nargs=argparse.REMAINDER, help="arguments for bench/quota.py (after --)"
    )
    args = parser.parse_args()
    bench_args = [a for a in args.bench_args if a != "--"] or ["--no-baseline", "--workers", "1"]
    if "--no-baseline" not in bench_args:
        bench_args.append("--no-baseline")
    with tempfile.TemporaryDirectory(prefix="idbatch-prof-") as tmp:
        raw = Path(tmp) / "worker.txt"
        cmd = [
            *(
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--subprocesses",
                "--nonblocking",
                "--gil",
            ),
            *("--format", "raw", "--rate", str(args.rate), "-o", str(raw), "--"),
            *(sys.executable, str(ROOT / "bench" / "quota.py"), *bench_args),
        ]
        bench = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
        stacks = raw.read_text(encoding="utf-8").splitlines()
        if args.keep:
            args.keep.write_text("\n".join(stacks) + "\n", encoding="utf-8")
    total = 0
    buckets: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    for line in stacks:
        stack, _, count = line.rpartition(" ")
        # --subprocesses prefixes each stack with its process (pid and command line)
        if not any("app.cli worker" in f for f in stack.split(";")[:3]):
            continue
        n = int(count)
        frames = stack.split(";")
        if len(frames) < 2:
            continue  # a process frame with no Python frame under it
        total += n
        # the innermost frame that belongs to a bucket owns the sample (Celery is the root
        # of every task's stack; what it calls is not Celery's cost)
        owner = _owner(frames)
        buckets[owner] += n
        self_time[frames[-1]] += n
    out = {
        "worker_samples": total,
        "share_by_bucket": {k: round(v / max(1, total), 3) for k, v in buckets.most_common()},
        "top_self_frames": [[f, round(n / max(1, total), 3)] for f, n in self_time.most_common(25)],
        "bench": bench_json(bench.stdout),
    }
    sys.stdout.write(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
