"""``idbatch report BATCH --html out.html``: one self-contained HTML file people look at.

No network: no scripts, fonts or images from anywhere; the charts are inline SVG drawn
here, the style is inline CSS. The numbers come from ``db.reports.build_report`` (the same
as the terminal report, masked unless ``--reveal``) and ``db.ops.report_series`` (calls
over time, latencies, errors, retries). Every text is HTML-escaped: external refs and
reasons come from manifests.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence

from db.ops import Series
from db.reports import Report
from idbatch.providers import accounts_of, quota_of
from idbatch.settings import Settings

PALETTE = {
    "passed": "#2e7d32",
    "negative": "#f9a825",
    "rejected": "#6d4c41",
    "failed": "#c62828",
    "cancelled": "#757575",
    "pending": "#90a4ae",
    "queued": "#64b5f6",
    "running": "#1e88e5",
    "retry_wait": "#ab47bc",
}
ACCENT = "#1565c0"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    width: int = 460,
    unit: str = "",
    colors: dict[str, str] | None = None,
) -> str:
    """Horizontal bars, one per item, labelled with the value."""
    if not items:
        return '<p class="none">none</p>'
    row = 24
    label_w = min(260, 12 + int(7.5 * max(len(label) for label, _ in items)))  # ~7.5 px a character
    top = max(v for _, v in items) or 1
    h = row * len(items) + 6
    parts = [f'<svg viewBox="0 0 {width} {h}" width="{width}" height="{h}" role="img">']
    for i, (label, value) in enumerate(items):
        y = 3 + i * row
        w = max(1.0, (width - label_w - 70) * value / top)
        color = (colors or {}).get(label, ACCENT)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{_e(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="{color}" rx="2"/>'
            f'<text x="{label_w + w + 5:.1f}" y="{y + 16}">{value:,.0f}{_e(unit)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def stacked_bar(counts: dict[str, int], *, width: int = 940) -> str:
    """The status breakdown as one bar of 100 %, with a legend."""
    total = sum(counts.values())
    if not total:
        return '<p class="none">no jobs</p>'
    order = [s for s in PALETTE if s in counts] + [s for s in counts if s not in PALETTE]
    x = 0.0
    parts = [f'<svg viewBox="0 0 {width} 64" width="{width}" height="64" role="img">']
    for status in order:
        w = width * counts[status] / total
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="28" fill="{PALETTE.get(status, ACCENT)}">'
            f"<title>{_e(status)}: {counts[status]}</title></rect>"
        )
        x += w
    lx = 0
    for status in order:
        label = f"{status} {counts[status]:,} ({100 * counts[status] / total:.1f}%)"
        parts.append(
            f'<rect x="{lx}" y="40" width="12" height="12" fill="{PALETTE.get(status, ACCENT)}"/>'
            f'<text x="{lx + 16}" y="51">{_e(label)}</text>'
        )
        lx += 22 + 7 * len(label)
    parts.append("</svg>")
    return "".join(parts)


def rate_chart(per_second: Sequence[tuple[int, int, int]], quota: float | None, *, width: int = 940) -> str:
    """Calls started per second over the batch, billable calls, and the quota as a line."""
    if not per_second:
        return '<p class="none">no provider calls</p>'
    h, left, bottom, top_pad = 220, 48, 28, 10
    # Long batches: average into at most 300 buckets so the SVG stays small.
    step = max(1, math.ceil(len(per_second) / 300))
    buckets = [
        (
            per_second[i][0],
            sum(p[1] for p in per_second[i : i + step]) / step,
            sum(p[2] for p in per_second[i : i + step]) / step,
        )
        for i in range(0, len(per_second), step)
    ]
    peak = max(max(b[1] for b in buckets), quota or 0) * 1.15 or 1
    span = max(1, per_second[-1][0])
    plot_w, plot_h = width - left - 10, h - bottom - top_pad

    def xy(t: float, v: float) -> str:
        return f"{left + plot_w * t / span:.1f},{top_pad + plot_h * (1 - v / peak):.1f}"

    calls = " ".join(xy(t, c) for t, c, _ in buckets)
    billable = " ".join(xy(t, b) for t, _, b in buckets)
    parts = [f'<svg viewBox="0 0 {width} {h}" width="{width}" height="{h}" role="img">']
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        v = peak * frac
        y = top_pad + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{v:.0f}</text>'
        )
    for frac in (0, 0.5, 1.0):
        parts.append(
            f'<text x="{left + plot_w * frac:.1f}" y="{h - 8}" text-anchor="middle">{span * frac:.0f}s</text>'
        )
    parts.append(f'<polyline points="{calls}" fill="none" stroke="{ACCENT}" stroke-width="1.6"/>')
    parts.append(f'<polyline points="{billable}" fill="none" stroke="#2e7d32" stroke-width="1.2"/>')
    if quota:
        y = top_pad + plot_h * (1 - quota / peak)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#c62828" '
            f'stroke-dasharray="6 4"/><text x="{width - 14}" y="{y - 4:.1f}" text-anchor="end" '
            f'fill="#c62828">quota {quota:g}/s</text>'
        )
    parts.append(
        f'<text x="{left + 8}" y="{top_pad + 12}" fill="{ACCENT}">calls/s</text>'
        f'<text x="{left + 70}" y="{top_pad + 12}" fill="#2e7d32">billable/s</text></svg>'
    )
    return "".join(parts)


LATENCY_EDGES_MS = (25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2500, 5000, 10000)


def latency_histogram(latencies_ms: Sequence[float]) -> str:
    if not latencies_ms:
        return '<p class="none">no timed calls</p>'
    counts = [0] * (len(LATENCY_EDGES_MS) + 1)
    for v in latencies_ms:
        counts[next((i for i, e in enumerate(LATENCY_EDGES_MS) if v <= e), len(LATENCY_EDGES_MS))] += 1
    labels = [f"≤ {e} ms" for e in LATENCY_EDGES_MS] + [f"> {LATENCY_EDGES_MS[-1]} ms"]
    items = [(label, float(n)) for label, n in zip(labels, counts, strict=True)]
    while items and items[-1][1] == 0:  # trim the empty tail
        items.pop()
    return bar_chart(items)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    if not rows:
        return '<p class="none">none</p>'
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e('' if r.get(c) is None else r.get(c))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC",sans-serif;margin:24px;color:#212121;
background:#fafafa;max-width:1000px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:13px}.cards{display:flex;gap:10px;flex-wrap:wrap;margin:14px 0}
.card{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:20px}.card span{font-size:12px;color:#666}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:0 24px}
svg text{font-size:12px;fill:#333}svg .grid{stroke:#e0e0e0}
table{border-collapse:collapse;font-size:12px;background:#fff}td,th{border:1px solid #e0e0e0;padding:3px 8px;
text-align:left}.none{color:#888;font-size:13px}.ok{color:#2e7d32}.bad{color:#c62828}
"""


def provider_quota(settings: Settings, provider: str) -> float | None:
    """The provider's calls/s summed over its accounts (None: no limit configured or known)."""
    total = sum(quota_of(settings, provider, a.name) for a in accounts_of(settings, provider))
    return total or None


def render_html(report: Report, series: Series, *, quota: float | None, revealed: bool = False) -> str:
    """The whole page as one string."""
    state = "finished" if report.state == "active" and report.done else report.state
    p50, p99 = percentile(series.latencies_ms, 0.5), percentile(series.latencies_ms, 0.99)
    duration = series.per_second[-1][0] + 1 if series.per_second else 0
    rate = report.attempts / duration if duration else 0.0
    accounted = (
        '<span class="ok">every input row accounted for</span>'
        if report.accounted
        else '<span class="bad">ROWS MISSING</span>'
    )
    cards = [
        ("input rows", f"{report.total_rows:,}"),
        ("terminal", f"{report.terminal:,}"),
        ("provider calls", f"{report.attempts:,}"),
        ("billable", f"{report.billable_calls:,}"),
        ("in doubt", f"{report.in_doubt_calls:,}"),
        ("reused (not billed)", f"{report.reused:,}"),
        ("jobs retried", f"{report.retried_jobs:,}"),
        ("calls/s (mean)", f"{rate:.1f}"),
        ("latency p50 / p99", f"{p50 or 0:.0f} / {p99 or 0:.0f} ms"),
    ]
    attempts = [(f"{a} attempt{'s' if a != 1 else ''}", float(n)) for a, n in series.attempts_per_job.items()]
    masking = (
        '<b class="bad">UNMASKED (revealed, audited)</b>'
        if revealed
        else "PII masked (<code>idbatch report --reveal</code> to unmask, audited)"
    )
    started = series.started.strftime("%Y-%m-%d %H:%M:%S UTC") if series.started else "no calls"
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    billing = [("billable", float(report.billable_calls)), ("in doubt", float(report.in_doubt_calls))]
    billing += [(f"account {a}", float(n)) for a, n in series.accounts.items()]
    sections = [
        f"<h1>Batch {report.batch_id} — {_e(report.provider)}, {_e(report.kind)}, {_e(state)}</h1>",
        f'<div class="meta">source {_e(report.source)} · first call {_e(started)} · '
        f"generated {_e(generated)} · {accounted} · {masking}</div>",
        '<div class="cards">'
        + "".join(f"<div class=card><b>{_e(v)}</b><span>{_e(k)}</span></div>" for k, v in cards)
        + "</div>",
        "<h2>Jobs by status</h2>",
        stacked_bar(report.counts),
        "<h2>Provider calls per second vs quota</h2>",
        rate_chart(series.per_second, quota),
        '<div class="grid2"><div><h2>Latency distribution</h2>',
        latency_histogram(series.latencies_ms),
        "</div><div><h2>Warnings</h2>",
        bar_chart([(k, float(v)) for k, v in report.warnings.items()][:12]),
        "</div><div><h2>Errors by code</h2>",
        bar_chart([(k, float(v)) for k, v in series.errors_by_code.items()][:12], colors={}),
        "</div><div><h2>Attempts per job (retries)</h2>",
        bar_chart(attempts),
        "</div><div><h2>Billing</h2>",
        bar_chart(billing),
        "</div><div><h2>Provider codes</h2>",
        bar_chart([(k, float(v)) for k, v in report.provider_codes.items()][:12]),
        "</div></div>",
        "<h2>Rejected rows</h2>",
        _table(report.rejected, ("row", "ref", "reason")),
        "<h2>Processing failed</h2>",
        _table(report.failed, ("row", "ref", "reason", "attempts")),
        "<h2>Sample results" + ("" if revealed else " (masked)") + "</h2>",
        _table(report.samples, ("row", "ref", "status", "name", "id_number", "sex", "birth", "similarity")),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>idbatch batch {report.batch_id}</title><style>{CSS}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
