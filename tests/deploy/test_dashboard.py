"""The provisioned Grafana dashboard asks only for metrics idbatch exports, and Prometheus
scrapes the port the containers serve them on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import idbatch.metrics  # noqa: F401 - registers the metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "idbatch.json"
SCRAPE_TIME = {"idbatch_broker_queue_depth", "idbatch_backlog_jobs"}  # collectors in workers.metrics


def exported() -> set[str]:
    names = set(SCRAPE_TIME)
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            names.add(sample.name)
        names.add(metric.name)
    return names


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bidbatch_[a-z_]+", e)}
    known = exported() | {n + "_bucket" for n in exported()} | {n + "_total" for n in exported()}
    assert used and used <= known, used - known
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("throughput vs quota", "errors", "latency", "circuit", "backlog eta"):
        assert topic in titles, topic


def test_prometheus_scrapes_the_metrics_port_of_the_compose_file() -> None:
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    port = int(compose["x-idbatch"]["environment"]["IDBATCH_METRICS_PORT"])
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["idbatch-worker"]["dns_sd_configs"][0]["port"] == port
    assert jobs["idbatch-beat"]["static_configs"][0]["targets"] == [f"beat:{port}"]
    assert {"prometheus", "grafana"} <= set(compose["services"])
