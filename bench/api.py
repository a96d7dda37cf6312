"""HTTP API benchmark: single-card submissions at a fixed offered load, 1,000-card batch
bodies, and the CSV ingest path on the same cards in the same run.

- ``single_*``: an open-loop client offers ``--rate`` POST /v1/verifications per second
  for ``--seconds`` (each with its own Idempotency-Key), so a slow server shows as
  latency, not as a politely slower client. Latency is per request, client side.
- ``batch_cards_per_s``: ``--batches`` POST /v1/batches of ``--batch-size`` cards (JSON),
  two at a time, cards accepted per second of wall time.
- ``csv_cards_per_s``: the same number of cards as a CSV manifest through
  ``producers.submit`` (the CSV ingest path, in-process), the baseline of the batch path.

The API runs as ``idbatch api`` in its own process, on Postgres + Redis, with no workers
(submissions are measured, not verification). Cards are synthetic (valid checksums,
https image refs that are never fetched). Prints one JSON object.

    python bench/api.py [--rate 300] [--seconds 10] [--batches 10] [--batch-size 1000]
                        [--api-workers 1] [--client raw|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from common import PII_KEY, free_port, fresh_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REDIS = os.environ.get("IDBATCH_BENCH_REDIS", "redis://127.0.0.1:6379/0")
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(i: int) -> str:
    body = f"110101{1950 + i % 50}{1 + i % 12:02d}{1 + i % 28:02d}{i % 1000:03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, WEIGHTS, strict=True)) % 11]


def card(i: int) -> dict[str, str]:
    return {
        "external_ref": f"R{i:08d}",
        "front_image": f"https://img.example.com/{i}-front.jpg",
        "name": "王芳",
        "id_number": id_number(i),
    }


def cpu_seconds(pid: int) -> float:
    """user+sys CPU of ``pid`` and its child processes (uvicorn's workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class RawClient:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams, for the single-card load.

    httpx's AsyncClient costs ~3.5 ms of CPU per request on this box, more than the API
    answering it (measured: ``single_client_cpu_ms`` beside ``single_api_cpu_ms``); on two
    shared cores the load generator then starves the server it measures. This client
    writes a prebuilt request and reads the status line, headers and Content-Length body,
    over up to ``max_connections`` kept-alive connections (a request waits for a free one,
    and that wait counts in its latency, as with httpx's pool). ``--client httpx`` keeps
    the old client for comparison.
    """

    def __init__(self, url: str, key: str, max_connections: int = 256) -> None:
        host_port = url.removeprefix("http://")
        self.host, port = host_port.split(":")
        self.port = int(port)
        self.key = key
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(max_connections)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        async with self.slots:
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            head = (
                f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\nauthorization: Bearer {self.key}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
            )
            writer.write(head.encode() + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            self.idle.append((reader, writer))
            return int(status_line.split()[1])

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def singles_raw(url: str, key: str, rate: float, seconds: float) -> dict[str, Any]:
    """The open-loop single-card load over ``RawClient`` (the default client)."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    client = RawClient(url, key)

    by_second: dict[int, list[float]] = {}

    async def one(i: int) -> None:
        started = time.perf_counter()
        body = json.dumps(card(i)).encode()
        status = await client.post("/v1/verifications", body, {"Idempotency-Key": f"s{i}"})
        latencies.append((time.perf_counter() - started) * 1000)
        if i >= 0:
            by_second.setdefault(int(i / rate), []).append(latencies[-1])
        codes[status] = codes.get(status, 0) + 1

    # Warm the server's caches (compiled statements, the key, pooled connections) and a
    # few kept-alive connections: 64 requests, 8 at a time, not measured.
    for w in range(8):
        await asyncio.gather(*(one(-1 - w * 8 - k) for k in range(8)))
    latencies.clear()
    codes.clear()
    total = int(rate * seconds)
    elapsed = await _open_loop(one, rate, total)
    client.close()
    out = _single_summary(rate, total, elapsed, latencies, codes)
    # p99 of the requests sent in each second: a stall shows as one bad second, a server
    # that cannot keep up as a rising series.
    out["single_p99_ms_by_second"] = [round(percentile(v, 0.99), 1) for _, v in sorted(by_second.items())]
    return out


def _single_summary(
    rate: float, total: int, elapsed: float, latencies: list[float], codes: dict[int, int]
) -> dict[str, Any]:
    return {
        "offered_per_s": rate,
        "single_requests": total,
        "single_submissions_per_s": round(codes.get(202, 0) / elapsed, 1),
        "single_p50_ms": round(statistics.median(latencies), 1),
        "single_p99_ms": round(percentile(latencies, 0.99), 1),
        "single_status_codes": {str(k): v for k, v in sorted(codes.items())},
    }


async def singles(url: str, key: str, rate: float, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=30
    ) as client:

        async def one(i: int) -> None:
            started = time.perf_counter()
            r = await client.post("/v1/verifications", json=card(i), headers={"Idempotency-Key": f"s{i}"})
            latencies.append((time.perf_counter() - started) * 1000)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1

        await one(-1)  # warm the connection and the server's caches
        latencies.clear()
        codes.clear()
        total = int(rate * seconds)
        elapsed = await _open_loop(one, rate, total)
    return _single_summary(rate, total, elapsed, latencies, codes)


def batches(url: str, key: str, count: int, size: int) -> dict[str, Any]:
    bodies = [
        json.dumps({"cards": [card(10_000_000 + b * size + i) for i in range(size)]}) for b in range(count)
    ]
    accepted = 0
    start = time.perf_counter()
    with httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
        timeout=300,
    ) as client:
        from concurrent.futures import ThreadPoolExecutor

        def post(b: int) -> int:
            r = client.post("/v1/batches", content=bodies[b], headers={"Idempotency-Key": f"b{b}"})
            r.raise_for_status()
            return int(r.json()["queued"])

        with ThreadPoolExecutor(2) as pool:
            accepted = sum(pool.map(post, range(count)))
    elapsed = time.perf_counter() - start
    return {
        "batch_bodies": count,
        "batch_size": size,
        "batch_cards": accepted,
        "batch_cards_per_s": round(accepted / elapsed, 1),
    }


async def _open_loop(one: Callable[[int], Awaitable[None]], rate: float, total: int) -> float:
    """Start ``one(i)`` at ``i / rate`` s whatever the answers (open loop); wall s to the last.

    The load generator's own garbage collections would show as server latency: off meanwhile.
    """
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        return time.perf_counter() - start
    finally:
        gc.enable()


def csv_path(count: int, size: int) -> dict[str, Any]:
    """The CSV ingest path on the same number of cards (the producers' own loop)."""
    from idbatch.settings import get_settings
    from producers.submit import submit_path

    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "m.csv"
        with manifest.open("w", encoding="utf-8") as fh:
            fh.write("external_ref,front_image,name,id_number\n")
            for i in range(count * size):
                c = card(20_000_000 + i)
                fh.write(f"{c['external_ref']},{c['front_image']},{c['name']},{c['id_number']}\n")
        start = time.perf_counter()
        result = submit_path(manifest, settings=get_settings())
        elapsed = time.perf_counter() - start
    return {"csv_cards": result.queued, "csv_cards_per_s": round(result.queued / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=330.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument(
        "--client", choices=("raw", "httpx"), default="raw", help="the single-card load client"
    )
    args = parser.parse_args()
    with fresh_database("idbatch_bench_api", migrate=False) as db:
        env = {
            "IDBATCH_DATABASE_URL": db,
            "IDBATCH_BROKER_URL": REDIS,
            "IDBATCH_PII_KEY": PII_KEY,
            "IDBATCH_QUEUE": f"idbatch.bench.{uuid.uuid4().hex[:8]}",
            "IDBATCH_API_QUOTA_PER_S": "0",
            "IDBATCH_DATA_DIR": tempfile.mkdtemp(prefix="idbatch-bench-api-"),
        }
        os.environ.update(env)
        from db.migrate import upgrade
        from db.tenants import create_tenant

        upgrade(db)
        _, key, _ = create_tenant("bench")
        port = free_port()
        # The API's stderr goes to a file (a pipe nobody reads would block it once full)
        # and its tail is shown if the run fails.
        api_log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in the finally below
        api = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--port", str(port), "--workers", str(args.api_workers)],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=api_log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            out: dict[str, Any] = {"api_workers": args.api_workers, "cpus": os.cpu_count()}
            cpu0, api0 = time.process_time(), cpu_seconds(api.pid)
            load = singles_raw if args.client == "raw" else singles
            out["single_client"] = args.client
            out |= asyncio.run(load(url, key, args.rate, args.seconds))
            n = max(out["single_requests"], 1)
            # Where the box's two cores went during the single-card run, per request.
            out["single_client_cpu_ms"] = round(1000 * (time.process_time() - cpu0) / n, 2)
            out["single_api_cpu_ms"] = round(1000 * (cpu_seconds(api.pid) - api0) / n, 2)
            out |= batches(url, key, args.batches, args.batch_size)
        except BaseException:
            api_log.seek(0)
            print(api_log.read()[-4000:], file=sys.stderr)
            raise
        finally:
            api.terminate()
            api.wait(30)
            api_log.close()
        out |= csv_path(args.batches, args.batch_size)
        out["batch_vs_csv"] = round(out["batch_cards_per_s"] / max(out["csv_cards_per_s"], 1e-9), 3)
        out["targets"] = {
            "single_submissions_per_s>=300": out["single_submissions_per_s"] >= 300,
            "single_p99_ms<=100": out["single_p99_ms"] <= 100,
            "batch_cards_per_s>=10000": out["batch_cards_per_s"] >= 10000,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
