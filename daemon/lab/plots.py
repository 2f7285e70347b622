"""The PNG plots of `fenliu simulate --report DIR` (matplotlib, the `lab` extra).

    queue.png      queue length and waits over the day, one line per policy
    shares.png     each agent's buyers per online hour, per policy (who gets how much)
    tradeoff.png   conversion against fairness (Jain index) and p95 wait, one point per policy
    estimates.png  the wait announced on entering the queue against the real wait, for
                   Fenliu's estimator and the Asterisk and Rocket.Chat baselines
    explain.png    each agent's share of buyers split by the rule that assigned them

Everything is drawn from the traces and the measures; nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt

from daemon.lab.trace import PolicyResult

HOUR_MS = 3_600_000
DPI = 110


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


Plot = Callable[[Mapping[str, PolicyResult], Path], None]
PLOTS: list[tuple[str, str, Plot]] = [  # file, title, how it is drawn
    ("queue.png", "Queue length and waits over the run", _queue_plot),
    ("shares.png", "Buyers per online hour, per agent", _share_plot),
    ("tradeoff.png", "Conversion against fairness and waiting", _tradeoff_plot),
    ("estimates.png", "Announced wait against real wait", _estimate_plot),
    ("explain.png", "What made each agent's share", _explain_plot),
]
