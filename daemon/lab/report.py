"""The report of `fenliu simulate --report DIR`: one HTML page with PNG plots.

    queue.png      queue length and waits over the day, one line per policy
    shares.png     each agent's buyers per online hour, per policy (who gets how much)
    tradeoff.png   conversion against fairness (Jain index) and p95 wait, one point per policy
    estimates.png  the wait announced on entering the queue against the real wait, for
                   Fenliu's estimator and the Asterisk and Rocket.Chat baselines
    explain.png    each agent's share of buyers split by the rule that assigned them

Everything is drawn from the traces and the measures; nothing here decides anything.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt

from daemon.lab.trace import Trace

HOUR_MS = 3_600_000
DPI = 110


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """One policy's run as the report needs it."""

    trace: Trace
    measures: dict[str, Any]
    explain: dict[str, Any]
    estimates: Sequence[tuple[float, float, float, float]]  # real, fenliu, asterisk, rocket (s)


def write_report(
    folder: Path, *, shop_id: str, scenario: str, seed: int, results: Mapping[str, PolicyResult]
) -> Path:
    """Write index.html and its PNGs into `folder`; the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = [
        ("queue.png", "Queue length and waits over the run", _queue_plot),
        ("shares.png", "Buyers per online hour, per agent", _share_plot),
        ("tradeoff.png", "Conversion against fairness and waiting", _tradeoff_plot),
        ("estimates.png", "Announced wait against real wait", _estimate_plot),
        ("explain.png", "What made each agent's share", _explain_plot),
    ]
    figures = []
    for name, title, draw in plots:
        draw(results, folder / name)
        figures.append(f'<h2>{html.escape(title)}</h2>\n<img src="{name}" alt="{title}">')
    page = folder / "index.html"
    page.write_text(
        "<!doctype html>\n<meta charset='utf-8'>\n"
        f"<title>Fenliu policy lab: {html.escape(shop_id)}, {html.escape(scenario)}</title>\n"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}th:first-child,td:first-child{text-align:left}"
        "img{max-width:100%}</style>\n"
        f"<h1>Policy lab — shop {html.escape(shop_id)}, scenario {html.escape(scenario)}, "
        f"seed {seed}</h1>\n"
        "<p>Every policy saw the same buyers and agents (common random numbers); only the "
        "routing differs.</p>\n" + _table(results) + "\n" + "\n".join(figures) + "\n"
    )
    return page


# ----------------------------------------------------------------------------- table

HEADLINE = (
    ("conversion", "conversion", "{:.1%}"),
    ("expected_conversion", "conversion expected", "{:.1%}"),
    ("orders", "orders", "{:,}"),
    ("wait_p50_s", "wait p50 (s)", "{:.0f}"),
    ("wait_p95_s", "wait p95 (s)", "{:.0f}"),
    ("wait_max_s", "wait max (s)", "{:.0f}"),
    ("abandonment", "abandonment", "{:.1%}"),
    ("jain", "Jain", "{:.3f}"),
    ("gini", "Gini", "{:.3f}"),
    ("max_min_share", "max/min share", "{:.2f}"),
    ("fenliu_mare", "estimate MARE Fenliu", "{:.2f}"),
    ("asterisk_mare", "Asterisk", "{:.2f}"),
    ("rocketchat_mare", "Rocket.Chat", "{:.2f}"),
    ("fenliu_mae_s", "estimate MAE Fenliu (s)", "{:.0f}"),
    ("asterisk_mae_s", "Asterisk (s)", "{:.0f}"),
    ("rocketchat_mae_s", "Rocket.Chat (s)", "{:.0f}"),
)


def headline_rows(results: Mapping[str, PolicyResult]) -> list[list[str]]:
    """The side-by-side policy table: a header row, then one row per policy."""
    rows = [["policy", *(label for _, label, _ in HEADLINE)]]
    for name, result in results.items():
        head = result.measures.get("headline", {})
        rows.append([name, *(_fmt(head.get(key), fmt) for key, _, fmt in HEADLINE)])
    return rows


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value)


def _table(results: Mapping[str, PolicyResult]) -> str:
    rows = headline_rows(results)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:]
    )
    return f"<table><tr>{head}</tr>{body}</table>"


# ----------------------------------------------------------------------------- plots


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _queue_plot(results: Mapping[str, PolicyResult], path: Path) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    for name, result in results.items():
        trace = result.trace
        xs = [(s.at - trace.start) / HOUR_MS for s in trace.queue]
        top.plot(xs, [s.waiting for s in trace.queue], label=name, linewidth=1.2)
        hours: dict[int, list[float]] = {}
        for inquiry in trace.inquiries:
            if inquiry.served_at is not None:
                hour = (inquiry.arrived - trace.start) // HOUR_MS
                hours.setdefault(hour, []).append((inquiry.served_at - inquiry.arrived) / 1000)
        keys = sorted(hours)
        bottom.plot(keys, [_pct(sorted(hours[h]), 95) for h in keys], label=name, linewidth=1.2)
    top.set_ylabel("buyers waiting")
    bottom.set_ylabel("wait p95 (s) by arrival hour")
    bottom.set_xlabel("hours since start")
    top.legend(fontsize=8)
    _save(fig, path)


def _share_plot(results: Mapping[str, PolicyResult], path: Path) -> None:
    names = list(results)
    first = results[names[0]].trace
    agents = [a for a in first.agents.values() if a.online_ms > 0]
    agents.sort(key=lambda a: (a.groups[:1], a.agent_id))
    fig, axis = plt.subplots(figsize=(max(8, 0.32 * len(agents) * len(names) / 2), 4.8))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        trace = results[name].trace
        counts: dict[str, int] = {}
        for inquiry in trace.inquiries:
            if inquiry.agent_id is not None:
                counts[inquiry.agent_id] = counts.get(inquiry.agent_id, 0) + 1
        rates = [
            counts.get(a.agent_id, 0) / (trace.agents[a.agent_id].online_ms / HOUR_MS)
            for a in agents
        ]
        axis.bar([j + i * width for j in range(len(agents))], rates, width, label=name)
    axis.set_xticks([j + 0.4 - width / 2 for j in range(len(agents))])
    axis.set_xticklabels([a.agent_id for a in agents], rotation=90, fontsize=7)
    axis.set_ylabel("buyers per online hour")
    axis.legend(fontsize=8)
    _save(fig, path)


def _tradeoff_plot(results: Mapping[str, PolicyResult], path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, result in results.items():
        head = result.measures.get("headline", {})
        conversion, jain, p95 = head.get("conversion"), head.get("jain"), head.get("wait_p95_s")
        if conversion is None:
            continue
        if jain is not None:
            left.scatter([jain], [conversion * 100])
            left.annotate(name, (jain, conversion * 100), fontsize=8)
        if p95 is not None:
            right.scatter([p95], [conversion * 100])
            right.annotate(name, (p95, conversion * 100), fontsize=8)
    left.set_xlabel("fairness: Jain index of buyers per online hour")
    right.set_xlabel("wait p95 (s)")
    for axis in (left, right):
        axis.set_ylabel("conversion (%)")
    _save(fig, path)


def _estimate_plot(results: Mapping[str, PolicyResult], path: Path) -> None:
    """Announced against real wait, one panel per estimator, framed on the real waits:
    an estimate above the frame is drawn on its top edge and counted in the title."""
    labels = ("Fenliu", "Asterisk", "Rocket.Chat")
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), sharex=True, sharey=True)
    reals = [p[0] for result in results.values() for p in result.estimates]
    top = max(reals, default=1.0) * 1.5
    above = [0, 0, 0]
    for name, result in results.items():
        points = result.estimates
        if not points:
            continue
        real = [p[0] for p in points]
        for k, axis in enumerate(axes):
            estimate = [min(p[k + 1], top) for p in points]
            above[k] += sum(1 for p in points if p[k + 1] > top)
            axis.scatter(real, estimate, s=4, alpha=0.4, label=name)
    for axis, label, out in zip(axes, labels, above, strict=True):
        axis.plot([0, top], [0, top], color="grey", linewidth=0.8)
        axis.set_xlim(0, top)
        axis.set_ylim(0, top * 1.02)
        axis.set_title(label + (f" ({out:,} above the frame)" if out else ""))
        axis.set_xlabel("real wait (s)")
    axes[0].set_ylabel("announced on entering the queue (s)")
    axes[0].legend(fontsize=8, markerscale=3)
    _save(fig, path)


def _explain_plot(results: Mapping[str, PolicyResult], path: Path) -> None:
    names = list(results)
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 3.2 * len(names)), squeeze=False)
    for axis, name in zip(axes[:, 0], names, strict=True):
        agents = results[name].explain.get("agents", [])
        rules = sorted({rule for a in agents for rule in a["by_rule"]})
        bottom = [0.0] * len(agents)
        for rule in rules:
            parts = [a["by_rule"].get(rule, {}).get("share", 0.0) * 100 for a in agents]
            axis.bar(range(len(agents)), parts, bottom=bottom, label=rule)
            bottom = [b + p for b, p in zip(bottom, parts, strict=True)]
        axis.set_xticks(range(len(agents)))
        axis.set_xticklabels([a["id"] for a in agents], rotation=90, fontsize=7)
        axis.set_ylabel(f"{name}: share (%)")
        axis.legend(fontsize=7, ncol=4)
    _save(fig, path)


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else 0.0
