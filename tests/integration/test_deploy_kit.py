"""The operations kit in deploy/ (deploy/README.md): the alert rules pass `promtool check
rules` and their unit tests under `promtool test rules`, each alert both firing and staying
quiet, and each is explained in deploy/README.md and in docs/operations.md's runbook; the
Grafana dashboard has a panel for each thing an operator watches, every panel
queries Prometheus through the `${datasource}` variable, and every query is valid PromQL
(promtool parses them as recording rules). That the metrics they name exist is
tests/system/test_deploy_metrics.py's part, against a real daemon."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import deploy_kit as kit

# What an operator watches (issue 13, part 6), and the metric a panel for it must query.
WATCHED = {
    "queue length per shop": "fenliu_queue_length",
    "oldest wait per shop": "fenliu_queue_oldest_wait_seconds",
    "assignments by reason": "fenliu_assignments_total",
    "decision latency": "fenliu_decision_seconds_bucket",
    "consumer lag": "fenliu_consumer_lag",
    "checkpoint time": "fenliu_checkpoint_seconds_bucket",
    "restores": "fenliu_restores_total",
    "rejects": "fenliu_rejects_total",
    "quarantined shops": "fenliu_shop_quarantined",
}
PER_SHOP = ("fenliu_queue_length", "fenliu_queue_oldest_wait_seconds", "fenliu_assignments_total")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kit.promtool(), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_alert_rules_pass_promtool_check_rules() -> None:
    result = _promtool("check", "rules", kit.RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(kit.rules())} rules found" in result.stdout


def test_the_alert_rules_pass_their_promtool_unit_tests() -> None:
    result = _promtool("test", "rules", kit.RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_stays_quiet() -> None:
    cases: dict[str, list[bool]] = {}
    for test in yaml.safe_load(kit.RULE_TESTS.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], []).append(bool(case["exp_alerts"]))
    alerts = [rule["alert"] for rule in kit.rules()]
    assert sorted(cases) == sorted(alerts)
    assert {name: sorted(set(fired)) for name, fired in cases.items()} == {
        name: [False, True] for name in alerts
    }


def test_every_alert_is_explained_in_the_readme_with_a_severity() -> None:
    readme = (kit.DEPLOY / "README.md").read_text()
    for rule in kit.rules():
        assert f"`{rule['alert']}`" in readme, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert set(rule["annotations"]) == {"summary", "description"}


def test_every_alert_has_a_runbook_section_saying_what_it_means_and_what_to_do() -> None:
    runbook = (kit.DEPLOY.parent / "docs" / "operations.md").read_text()
    sections = {
        part.partition("\n")[0]: part for part in re.split(r"^### ", runbook, flags=re.M)[1:]
    }
    for rule in kit.rules():
        heading = f"{rule['alert']} ({rule['labels']['severity']})"
        assert heading in sections, heading
        assert "**Means:**" in sections[heading] and "**Do:**" in sections[heading], heading


def test_the_dashboard_has_a_panel_for_each_thing_an_operator_watches() -> None:
    board = kit.dashboard()
    queried = {
        name: panel["title"]
        for panel in kit.panels(board)
        for target in panel["targets"]
        for name in kit.metric_names(target["expr"])
    }
    assert {what: metric in queried for what, metric in WATCHED.items()} == dict.fromkeys(
        WATCHED, True
    )
    for panel in kit.panels(board):
        for target in panel["targets"]:
            if kit.metric_names(target["expr"]) & set(PER_SHOP):
                assert 'shop=~"$shop"' in target["expr"], panel["title"]


def test_every_panel_queries_prometheus_through_the_datasource_variable() -> None:
    board = kit.dashboard()
    assert 36 <= board["schemaVersion"] <= 41 and board["uid"] and board["title"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in kit.panels(board):
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, title
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, title
        assert panel["targets"], title
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), title
        for target in panel["targets"]:
            assert target["expr"].strip(), title
            assert target["datasource"] == DATASOURCE, title


def test_the_dashboard_has_a_prometheus_datasource_and_a_shop_variable() -> None:
    variables: dict[str, dict[str, Any]] = {
        v["name"]: v for v in kit.dashboard()["templating"]["list"]
    }
    source, shop = variables["datasource"], variables["shop"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    assert (shop["type"], shop["datasource"]) == ("query", DATASOURCE)
    assert shop["definition"] == shop["query"]["query"]
    assert re.fullmatch(r"label_values\(fenliu_\w+, shop\)", shop["definition"])
    assert shop["multi"] and shop["includeAll"] and shop["allValue"] == ".*"


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    queries = kit.dashboard_queries(kit.dashboard())
    rules = [
        {"record": f"dashboard:query_{n}", "expr": kit.grafana_free(query)}
        for n, query in enumerate(queries)
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ('sum by (shop) (fenliu_queue_length{shop=~"$shop"})', {"fenliu_queue_length"}),
        ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[$__rate_interval])))", {"h_bucket"}),
        ("a > on (shop) group_left () 0.8 * max by (shop) (b)", {"a", "b"}),
        ("min_over_time(m[10m]) > 1e3 and deriv(m[10m:1m]) > bool 0", {"m"}),
        ('count(q{s="x(y)"} == 1) or vector(0)', {"q"}),
        ("sum without (x) (rate(c_total[5m] offset 1h)) unless d", {"c_total", "d"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
        ("rule:name_rate5m * 2.5e-3", {"rule:name_rate5m"}),
    ],
)
def test_metric_names_are_read_from_promql(query: str, names: set[str]) -> None:
    assert kit.metric_names(query) == names


def test_exposed_names_follow_each_family_type() -> None:
    text = (
        "# HELP c_total A counter\n# TYPE c_total counter\n"
        "# HELP h A histogram\n# TYPE h histogram\n"
        'h_bucket{le="+Inf"} 0.0\nh_count 0.0\nh_sum 0.0\n'
        "# HELP g A gauge\n# TYPE g gauge\n"
    )
    assert kit.exposed_names(text) == {"c_total", "h_bucket", "h_sum", "h_count", "g"}
    assert kit.sampled_names(text) == {"h_bucket", "h_count", "h_sum"}
