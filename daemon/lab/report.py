"""The report of `fenliu simulate --report DIR`: one HTML page with the PNG plots of
`daemon.lab.plots` (matplotlib, imported only when a report is written), and the policy table
that `fenliu simulate` prints too.

Everything is drawn from the traces and the measures; nothing here decides anything.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon.lab.trace import PolicyResult


def write_report(
    folder: Path, *, shop_id: str, scenario: str, seed: int, results: Mapping[str, PolicyResult]
) -> Path:
    """Write index.html and its PNGs into `folder`; the page's path."""
    from daemon.lab import plots  # noqa: PLC0415 - matplotlib is imported for --report only

    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    for name, title, draw in plots.PLOTS:
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
    ("oracle_share", "oracle share", "{:.0%}"),
    ("orders", "orders", "{:,}"),
    ("wait_p50_s", "wait p50 (s)", "{:.0f}"),
    ("wait_p95_s", "wait p95 (s)", "{:.0f}"),
    ("wait_max_s", "wait max (s)", "{:.0f}"),
    ("abandonment", "abandonment", "{:.1%}"),
    ("reply_share_within", "replies within deadline", "{:.1%}"),
    ("reply_p95_s", "reply p95 (s)", "{:.0f}"),
    ("first_reply_share_within", "first replies within deadline", "{:.1%}"),
    ("first_reply_p95_s", "first reply p95 (s)", "{:.0f}"),
    ("reassigned", "reassigned (unanswered)", "{:,}"),
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
