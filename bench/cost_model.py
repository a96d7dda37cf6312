"""How a backfill's cost grows with N cards, A accounts and W workers: a model, not a run.

Closed-form arithmetic over the figures bench/quota.py and bench/backfill.py measure
(``--cpu-ms-per-job``, ``--ingest-cards-per-s``, ...). It prints JSON for one scenario;
the defaults are issue 17's: 10 accounts at 100 calls/s and 10 million one-sided cards.
docs/throughput.md explains each term.

    python bench/cost_model.py
    python bench/cost_model.py --sides 2 --quota 20      # Tencent OCR: FRONT + BACK
"""

from __future__ import annotations

import argparse
import json
import math
import sys


def model(args: argparse.Namespace) -> dict[str, object]:
    rate = args.accounts * args.quota * (1 - args.headroom)  # calls/s the limiters grant
    cards_per_s = rate * (1 - args.fault_rate) / args.sides  # a failed call uses quota, bills nothing
    bound = args.cards * args.sides / (args.accounts * args.quota)
    run_s = args.cards / cards_per_s
    # ingest overlaps the run (jobs are published per committed chunk) unless it is slower
    ingest_s = args.cards / args.ingest_cards_per_s
    tail_s = args.latency_s * 3 + (args.backoff_cap_s if args.fault_rate else 0.0)
    wall = max(run_s, ingest_s) + args.chunk / args.ingest_cards_per_s + tail_s
    cores = cards_per_s * args.cpu_ms_per_job / 1000
    calls_in_flight = rate * args.latency_s
    slot_wait_threads = rate * 0.3  # a thread waits ~0.3 s for its slot in steady state (throughput.md)
    threads = math.ceil((calls_in_flight + slot_wait_threads) * 1.25)
    return {
        "scenario": {
            "cards": args.cards,
            "accounts": args.accounts,
            "quota_per_account_rps": args.quota,
            "sides_per_card": args.sides,
            "fault_rate": args.fault_rate,
            "headroom": args.headroom,
            "cpu_ms_per_job": args.cpu_ms_per_job,
        },
        "bound_s": round(bound, 1),
        "bound_h": round(bound / 3600, 2),
        "wall_s": round(wall, 1),
        "ratio": round(wall / bound, 4),
        "ratio_limit_as_n_grows": round(1 / ((1 - args.headroom) * (1 - args.fault_rate)), 4),
        "cards_per_s": round(cards_per_s, 1),
        "worker_cpu_cores": round(cores, 2),
        "worker_processes_at_one_per_core": max(1, math.ceil(cores / args.core_share)),
        "threads_total": threads,
        "postgres_statements_per_s": round(cards_per_s * args.statements_per_job, 0),
        "postgres_commits_per_s": round(cards_per_s * args.transactions_per_job, 0),
        "redis_limiter_ops_per_s": round(rate * 2, 0),
        "broker_messages_per_s": round(cards_per_s * (1 + args.fault_rate / (1 - args.fault_rate)), 1),
        "job_rows": args.cards,
        "attempt_rows": round(args.cards * args.sides / (1 - args.fault_rate)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cards", type=int, default=10_000_000)
    p.add_argument("--accounts", type=int, default=10)
    p.add_argument("--quota", type=float, default=100.0, help="calls/s per account")
    p.add_argument("--sides", type=int, default=1, help="billable calls per card")
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--headroom", type=float, default=0.02)
    p.add_argument("--latency-s", type=float, default=0.3, help="median provider latency")
    p.add_argument("--backoff-cap-s", type=float, default=10.0, help="the last retry's wait")
    p.add_argument("--cpu-ms-per-job", type=float, default=8.5, help="measured: bench/quota.py")
    p.add_argument("--core-share", type=float, default=0.7, help="share of a core a worker may use")
    p.add_argument(
        "--ingest-cards-per-s", type=float, default=1000.0, help="measured: bench/backfill.py ingest_s"
    )
    p.add_argument("--chunk", type=int, default=5000, help="cards per committed ingest chunk")
    p.add_argument("--statements-per-job", type=float, default=7.0)
    p.add_argument("--transactions-per-job", type=float, default=3.0)
    sys.stdout.write(json.dumps(model(p.parse_args()), indent=2) + "\n")


if __name__ == "__main__":
    main()
