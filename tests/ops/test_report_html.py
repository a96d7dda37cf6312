"""``idbatch report BATCH --html``: one self-contained file with every chart, masked by default."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from app.cli import app
from app.demo import run_demo
from app.report_html import bar_chart, rate_chart
from idbatch.pii import ID_NUMBER_RE
from tests.conftest import Env

SECTIONS = (
    "Jobs by status",
    "Provider calls per second vs quota",
    "Latency distribution",
    "Warnings",
    "Errors by code",
    "Attempts per job (retries)",
    "Billing",
    "Rejected rows",
    "Sample results (masked)",
)


def test_html_report_of_a_real_batch_is_self_contained_and_masked(env: Env, tmp_path: Path) -> None:
    settings = env()
    result = run_demo(Console(file=None, quiet=True), count=40, seed=3, provider="tencent_faceid")
    batch = result.report.batch_id
    out = tmp_path / "report.html"
    run = CliRunner().invoke(app, ["report", str(batch), "--html", str(out)])
    assert run.exit_code == 0, run.output
    page = out.read_text(encoding="utf-8")

    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page, title
    assert page.count("<svg") >= 7
    assert "quota 100/s" in page  # FaceID's documented quota drawn on the rate chart
    assert "input rows</span>" in page and "every input row accounted for" in page
    # self-contained: nothing is fetched, nothing runs
    assert not re.search(r"<script|<link|<img|@import|url\(|src=|href=", page, re.IGNORECASE)
    assert "http://" not in page and "https://" not in page
    # masked: no ID number, no claimed or recognized name
    assert not ID_NUMBER_RE.search(page)
    manifests = list((settings.data_dir / "demo").rglob("manifest.csv"))
    with manifests[0].open(encoding="utf-8") as fh:
        names = [r["name"] for r in csv.DictReader(fh) if r.get("name")]
    assert names and not [n for n in names if len(n) > 1 and n in page]


def test_charts_escape_what_manifests_wrote() -> None:
    svg = bar_chart([("<script>alert(1)</script>", 3.0)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_rate_chart_draws_the_quota_line() -> None:
    svg = rate_chart([(0, 90, 88), (1, 99, 99), (2, 40, 40)], 100.0)
    assert "quota 100/s" in svg and svg.count("<polyline") == 2
    assert rate_chart([], 100.0).startswith("<p")
