"""The operations kit in deploy/, read for its tests: the Grafana dashboard's queries, the
Prometheus rules' expressions, the metric names they use, and the `promtool` that checks
them (Debian's `prometheus` package; `make test` installs it when it runs as root).

`metric_names` reads PromQL as far as it needs to: strings, label matchers, ranges and
label lists (`by`, `on`, `group_left`, ...) are blanked out; a name followed by `(` is a
function or an aggregation, and keywords are skipped; every other name is a metric.
`exposed_names` is what a query may name given a /metrics answer: each family its
`# TYPE` line declares (a counter's name there ends in `_total`; a histogram's series are
`_bucket`, `_sum` and `_count`), whether or not it has samples yet, and each sample's name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "fenliu.json"
RULES = DEPLOY / "prometheus" / "fenliu.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "fenliu.rules.test.yml"

# Series Prometheus makes itself, not the daemon: a rule may name them.
PROMETHEUS_SERIES = {"up"}
# What Grafana puts in a query before it reaches Prometheus, and a stand-in for each.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$shop": ".*"}

_SERIES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_BLANKS = (
    r'"(?:[^"\\]|\\.)*"' r"|'(?:[^'\\]|\\.)*'",  # strings
    r"\{[^}]*\}",  # label matchers
    r"\[[^\]]*\]",  # ranges and subqueries
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",  # label lists
    r"\boffset\s+-?[0-9a-z]+",
)


def promtool() -> str:
    """The path of `promtool`; a skip when it is missing, a failure under CI=true."""
    found = shutil.which("promtool")
    if found:
        return found
    reason = "promtool is missing: `apt-get install prometheus` (make test does it as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def dashboard() -> dict[str, Any]:
    """deploy/grafana/fenliu.json."""
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but the rows, those inside collapsed rows included."""
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        found.extend(panel.get("panels", []) if panel["type"] == "row" else [panel])
    return found


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL query of the dashboard: its panels' targets and its query variables'
    `label_values(SELECTOR, label)` selectors."""
    queries = [target["expr"] for panel in panels(board) for target in panel["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert found, variable["definition"]
            queries.append(found.group(1))
    return queries


def grafana_free(query: str) -> str:
    """`query` as Prometheus gets it from Grafana, with a stand-in for each variable."""
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    assert "$" not in query, f"a Grafana variable without a stand-in: {query}"
    return query


def rules() -> list[dict[str, Any]]:
    """Every rule of deploy/prometheus/fenliu.rules.yml."""
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL query selects (see the module docstring)."""
    text = query
    for pattern in _BLANKS:
        text = re.sub(pattern, " ", text)
    names = set()
    for found in re.finditer(rf"(?<![\w.$]){_NAME}", text):
        name = found.group()
        if text[found.end() :].lstrip().startswith("(") or name in _KEYWORDS:
            continue
        names.add(name)
    return names


def exposed_names(metrics_text: str) -> set[str]:
    """The names a query may select given a /metrics answer (see the module docstring)."""
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            names.update(family + suffix for suffix in _SERIES.get(kind, ("",)))
        elif line and not line.startswith("#"):
            found = re.match(_NAME, line)
            assert found, line
            names.add(found.group())
    return names


def sampled_names(metrics_text: str) -> set[str]:
    """The names of a /metrics answer that have samples."""
    lines = metrics_text.splitlines()
    return {m.group() for ln in lines if ln[:1] != "#" and (m := re.match(_NAME, ln))}
