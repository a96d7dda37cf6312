"""Where one single-card POST spends the API process's CPU: py-spy over ``idbatch api``.

The method behind the API's per-request optimisations (README "Jobs from other
services", "Performance"): the API runs as ``idbatch api`` under ``py-spy record``
(raw collapsed stacks, sampled at 500 Hz, GIL-holding samples only), a closed-loop client
sends ``--requests`` single-card POSTs with their own Idempotency-Keys, and the samples
are summed per function, inclusive ("total": the function or anything it calls) and
exclusive ("self"). Prints JSON: the top ``--top`` of each, in percent of samples, and
the API process's CPU per request (user+sys of the process over the requests).

    python bench/profile_api.py [--requests 2000] [--concurrency 8] [--top 40] [--batch N]

Needs ``py-spy`` (``pip install py-spy``; not a project dependency). The profile itself
is written to a temporary file and never kept.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from api import REDIS, card, cpu_seconds
from common import PII_KEY, free_port, fresh_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def load(url: str, key: str, requests: int, concurrency: int, batch: int = 0) -> dict[int, int]:
    """``requests`` single-card POSTs, or with ``batch`` that many POST /v1/batches of ``batch`` cards."""
    codes: dict[int, int] = collections.Counter()
    queue = iter(range(requests))
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as c:

        async def worker() -> None:
            for i in queue:
                if batch:
                    body = {"cards": [card(10_000_000 + i * batch + n) for n in range(batch)]}
                    r = await c.post("/v1/batches", json=body, headers={"Idempotency-Key": f"b{i}"})
                else:
                    r = await c.post("/v1/verifications", json=card(i), headers={"Idempotency-Key": f"p{i}"})
                codes[r.status_code] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return dict(codes)


def summarise(raw: Path, top: int) -> dict[str, Any]:
    inclusive: collections.Counter[str] = collections.Counter()
    exclusive: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [
            f.split(" (")[0] + " " + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
            for f in stack.split(";")
        ]
        for name in set(frames):
            inclusive[name] += n
        exclusive[frames[-1]] += n
    pct = lambda c: [(k, round(100 * v / max(samples, 1), 1)) for k, v in c.most_common(top)]  # noqa: E731
    return {"samples": samples, "total_pct": pct(inclusive), "self_pct": pct(exclusive)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--batch", type=int, default=0, help="profile POST /v1/batches of this many cards")
    args = parser.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with fresh_database("idbatch_profile_api") as db, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(
            {
                "IDBATCH_DATABASE_URL": db,
                "IDBATCH_BROKER_URL": REDIS,
                "IDBATCH_PII_KEY": PII_KEY,
                "IDBATCH_QUEUE": f"idbatch.profile.{uuid.uuid4().hex[:8]}",
                "IDBATCH_API_QUOTA_PER_S": "0",
                "IDBATCH_DATA_DIR": tmp,
            }
        )
        from db.migrate import upgrade
        from db.tenants import create_tenant

        upgrade(db)
        _, key, _ = create_tenant("profile")
        port = free_port()
        api = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        raw = Path(tmp) / "profile.txt"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            asyncio.run(load(url, key, 50, 2))  # warm up
            spy = subprocess.Popen(
                [pyspy, "record", "--gil", "-r", "500", "-f", "raw", "-o", str(raw), "-p", str(api.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
            cpu0 = cpu_seconds(api.pid)
            codes = asyncio.run(load(url, key, args.requests, args.concurrency, args.batch))
            cpu1 = cpu_seconds(api.pid)
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        finally:
            api.terminate()
            api.wait(30)
        out = {"requests": args.requests, "batch": args.batch, "status_codes": codes}
        out["api_cpu_ms_per_request"] = round(1000 * (cpu1 - cpu0) / args.requests, 2)
        out |= summarise(raw, args.top) if raw.exists() else {"profile": "py-spy wrote nothing"}
    print(json.dumps(out, ensure_ascii=False, indent=None))


if __name__ == "__main__":
    main()
