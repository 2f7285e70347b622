"""Every metric the operations kit names — a panel of deploy/grafana/fenliu.json, one of
its variables, a rule of deploy/prometheus/fenliu.rules.yml — is in the /metrics answer of
a real `fenliu run` that has routed and queued buyers, so no panel stays empty and no alert
waits on a series that does not exist (a renamed metric fails here)."""

from __future__ import annotations

import pytest

from daemon.config import TopicsConfig
from daemon.dev.stack import Broker
from tests import deploy_kit as kit
from tests.e2e import DaemonProcess, Wire

pytestmark = pytest.mark.e2e

SHOPS = {
    "ops": """
id = "ops"
sticky_window = 0
[queue]
enabled = true
default_cap = 1
max_wait = "10m"
[[agents]]
id = "a1"
[[groups]]
name = "g"
agents = ["a1"]
[experiment]  # the grey-test series (FenliuExperimentArmStopped) exist only while one runs
name = "ops-test"
arms = { control = "efficiency", treatment = "average" }
split = { control = 50, treatment = 50 }
""",
}

# Gauges with a sample only for a shop set aside (quarantined, or waiting for its Redis node).
ONLY_WHEN_SET_ASIDE = {"fenliu_shop_quarantined", "fenliu_shop_waiting"}
# Served only with `[http] per_agent_metrics = true` (the reply-time panel says so).
ONLY_PER_AGENT = {"fenliu_reply_seconds_bucket"}


def kit_names() -> set[str]:
    """The metric names of every dashboard query and every rule expression."""
    queries = kit.dashboard_queries(kit.dashboard()) + [rule["expr"] for rule in kit.rules()]
    return {name for query in queries for name in kit.metric_names(query)}


async def test_every_metric_the_dashboard_and_the_rules_name_is_served(
    daemon: DaemonProcess, broker: Broker, topics: TopicsConfig
) -> None:
    async with Wire(broker.bootstrap, topics, "ops") as wire:
        await wire.status("a1", "online")
        await wire.inquiry("b1")
        await wire.inquiry("b2")  # a1's cap is 1: b2 waits
        await wire.assignment("b1")
        await wire.wait_for(lambda e: e.get("status") == "queued" and e["buyer_id"] == "b2")
    text = daemon.fresh_metrics()
    names = kit_names()
    assert len(names) >= 15 and "fenliu_decision_seconds_bucket" in names
    assert names - kit.exposed_names(text) - kit.PROMETHEUS_SERIES == ONLY_PER_AGENT
    unsampled = names - kit.sampled_names(text) - kit.PROMETHEUS_SERIES - ONLY_PER_AGENT
    assert unsampled == ONLY_WHEN_SET_ASIDE
    assert 'fenliu_queue_max_wait_seconds{shop="ops"} 600.0' in text
    assert 'fenliu_queue_length{group="g",shop="ops"} 1.0' in text
