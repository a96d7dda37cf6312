"""``idbatch demo``: a real batch of synthetic cards, end to end, on the embedded default.

Generates the sample (with a few defects of every kind), starts the simulator and the
image gateway on loopback, runs an in-process Celery worker on the in-memory broker
against SQLite, submits the manifest, follows it with a progress bar and prints the
reconciliation report. Exit status 0 only if every submitted row is accounted for.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from rich.console import Console

from app.embedded import apply_env, data_path, embedded_stack, image_gateway, wait_for_batch
from app.render import render_report
from db.reports import Report, build_report
from db.session import session_scope
from idbatch.servers import BackgroundServer
from idbatch.settings import get_settings
from producers.submit import submit_path
from simulator.app import create_app as create_simulator
from simulator.cards import load_registry
from simulator.samples import generate_sample
from simulator.state import SimState

SIM_TOKEN = "sim-acedata-token"  # noqa: S105 - the simulator's local test credential
# One config in our vocabulary; each adapter translates it into its vendor's flags.
DEMO_CONFIG = {
    "copy_warn": True,
    "reshoot_warn": True,
    "temp_id_warn": True,
    "detect_ps_warn": True,
    "border_check_warn": True,
}
# The simulator's local credentials and documented quotas per provider; the demo runs
# the shared limiter at each quota, so only injected faults are ever refused.
DEMO_QUOTAS = {"acedata": 50.0, "tencent_faceid": 100.0, "tencent_ocr": 20.0, "aliyun_market": 50.0}


def provider_env(provider: str, sim_url: str) -> dict[str, str]:
    """Point every provider at the simulator, with its local credentials."""
    from simulator.aliyun import DEFAULT_APPCODES
    from simulator.tencent import DEFAULT_SECRETS, FACEID_PREFIX, OCR_PREFIX

    secret_id, secret_key = next(iter(DEFAULT_SECRETS.items()))
    return {
        "IDBATCH_PROVIDER": provider,
        "IDBATCH_ACEDATA_BASE_URL": sim_url,
        "IDBATCH_ACEDATA_TOKEN": SIM_TOKEN,
        "IDBATCH_FACEID_BASE_URL": sim_url + FACEID_PREFIX,
        "IDBATCH_OCR_BASE_URL": sim_url + OCR_PREFIX,
        "IDBATCH_TENCENT_SECRET_ID": secret_id,
        "IDBATCH_TENCENT_SECRET_KEY": secret_key,
        "IDBATCH_ALIYUN_BASE_URL": sim_url,
        "IDBATCH_ALIYUN_APPCODE": next(iter(DEFAULT_APPCODES)),
        "IDBATCH_RATE_LIMITS": json.dumps({provider: DEMO_QUOTAS[provider]}),
    }


@dataclass
class DemoResult:
    report: Report
    simulator_stats: dict[str, object]
    expected: dict[str, int]
    seconds: float


def run_demo(
    console: Console,
    *,
    count: int = 200,
    seed: int | None = None,
    concurrency: int = 16,
    provider: str = "acedata",
    latency_ms: float = 80.0,
    fault_rate: float = 0.03,
) -> DemoResult:
    settings = get_settings()
    run_dir = data_path(settings, "demo", time.strftime("run-%Y%m%d-%H%M%S"))
    console.print(f"generating {count} synthetic cards in {run_dir} …")
    rows = generate_sample(run_dir, count, seed=seed)
    expected: dict[str, int] = {}
    for row in rows:
        expected[row.expect] = expected.get(row.expect, 0) + 1

    state = SimState(
        registry=load_registry(run_dir / "registry.jsonl"),
        seed=seed,
        quotas={"aliyun": DEMO_QUOTAS["aliyun_market"]},
    )
    state.faults.update(
        {"latency_ms": latency_ms, "latency_sigma": 0.4, "rate_5xx": fault_rate, "rate_429": fault_rate}
    )
    with BackgroundServer(create_simulator(state, acedata_tokens={SIM_TOKEN})) as sim:
        settings = apply_env(
            {
                **provider_env(provider, sim.url),
                "IDBATCH_BACKOFF_BASE_S": "0.25",
                "IDBATCH_BACKOFF_CAP_S": "5",
            }
        )
        with image_gateway(settings, run_dir) as gateway:
            settings = apply_env({"IDBATCH_GATEWAY_URL": gateway.url})
            console.print(
                f"simulator {sim.url}   image gateway {gateway.url}   database {settings.database_url}"
            )
            started = time.monotonic()
            with embedded_stack(settings, concurrency):
                result = submit_path(
                    run_dir / "manifest.csv", settings=settings, provider=provider, config=DEMO_CONFIG
                )
                console.print(
                    f"batch {result.batch_id}: {result.rows} rows, {result.queued} queued, "
                    f"{result.rejected} rejected at ingest"
                )
                wait_for_batch(result.batch_id, console, timeout_s=600)
            seconds = time.monotonic() - started
    with session_scope() as session:
        report = build_report(session, result.batch_id)
    render_report(report, console)
    stats = state.stats_json()
    accounts = stats["accounts"].values()
    calls = sum(int(a.get("calls", 0)) for a in accounts)
    billed = sum(int(a.get("billable", 0)) for a in accounts)
    console.print(
        f"simulator saw {calls} calls, billed {billed}; "
        f"idbatch recorded {report.billable_calls} billable calls"
    )
    console.print(f"sample expectation: {expected}   ({seconds:.1f}s)")
    return DemoResult(report, stats, expected, seconds)
