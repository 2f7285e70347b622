"""The simulated shop's past agent-status events (`simulate(history=...)`, daemon/lab/history.py;
issue 15 item 5): status only, from their own random streams, ending with every agent offline
before the scenario, ordinary days even before a Double 11; `"none"` is the run of before."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.config import load_shop_file
from daemon.core.config import ShopConfig
from daemon.core.engine import Engine
from daemon.core.explain import explain_shop
from daemon.lab.history import STATUS_DAYS, status_history, status_planner, status_start
from daemon.lab.measures import measure
from daemon.lab.policy import parse_policy
from daemon.lab.runner import SimRun, simulate
from daemon.lab.scenarios import HOUR_MS, TZ, find_scenario
from topics.events import AgentStatus, AgentStatusChanged

SHOPS = Path(__file__).resolve().parents[2] / "config" / "shops"
DAY_MS = 24 * HOUR_MS


@pytest.fixture(scope="module")
def big() -> ShopConfig:
    return load_shop_file(SHOPS / "big.toml")


def run(shop: ShopConfig, scenario: str, history: str, **kw: Any) -> SimRun:
    kw.setdefault("seed", 1)
    return simulate(shop, scenario, policy=parse_policy("efficiency"), history=history, **kw)


def test_history_none_is_the_run_from_before_the_history_existed(big: ShopConfig) -> None:
    """The trace of `steady` seed 1 at half the buyers: without history, a one-day run
    predicts no arrival (a profile needs a day of status changes), so everything but the
    announced estimates was byte for byte as commit 79f8c7b (before item 5) recorded it.
    The estimates differ from then (full trace was c0d3bdd9…91d85219): the patience the
    candidates learn within the day (daemon/core/patience.py) needs no history.

    Re-pinned for issue 26 (were e7c2f4b3…88fd4fa and cf192df1…72975fe): the trace records
    the waits for replies, and the few buyers who waited past the reply grace may leave
    (daemon/lab/world.py); and `[replies] overdue_is_busy` (default true) makes an agent whose
    buyer waited past the deadline busy. Each alone was checked to change only what it says:
    with it off the trace was byte for byte the one before."""
    data = run(big, "steady", "none", scale=0.5).trace.to_json()
    digest = hashlib.sha256(orjson.dumps(data)).hexdigest()
    assert digest == "f52531cf19921d399a01dd2d50ee2362df916d6882287659b4853edd308f89c9"
    for inquiry in data["inquiries"]:
        inquiry["estimate_s"] = None
    digest = hashlib.sha256(orjson.dumps(data)).hexdigest()
    assert digest == "ecec6aefc3bb4854970ff86fba569df963bd12ace688a123202bde5cecb4e5af"


@pytest.mark.parametrize("scenario", ["steady", "uneven_shifts", "double11"])
def test_history_is_agent_status_only_and_ends_with_everyone_offline(
    big: ShopConfig, scenario: str
) -> None:
    plan = find_scenario(scenario)
    past = status_history(big, plan, seed=1)
    end = status_start(plan)
    assert end <= plan.start and end - past[0][0] <= STATUS_DAYS * DAY_MS
    assert [at for at, _, _ in past] == sorted(at for at, _, _ in past)
    assert all(at <= end for at, _, _ in past)
    engine = Engine({big.id: big})
    for n, (at, agent_id, status) in enumerate(past):
        engine.handle(AgentStatusChanged(f"h{n}", big.id, at, agent_id, status), at)
    shop = engine.shop(big.id)
    assert {a.status for a in shop.agents.values()} == {AgentStatus.OFFLINE}
    assert not shop.buyers and shop.now <= plan.start
    started = {agent_id for _, agent_id, status in past if status is AgentStatus.ONLINE}
    assert started == {a.id for a in big.agents if any(a.id in g.agents for g in big.groups)}


def test_history_leaves_the_scenarios_draws_and_measures_alone(big: ShopConfig) -> None:
    """Same buyers, same shifts in the trace (common random numbers), online hours of the
    scenario only; only the estimates (and what follows from them) may differ."""
    none, past = run(big, "steady", "none", scale=0.5), run(big, "steady", "30d", scale=0.5)
    a, b = none.trace, past.trace
    assert [(r.inquiry_id, r.arrived) for r in a.inquiries if r.inquiry_id.endswith(".0")] == [
        (r.inquiry_id, r.arrived) for r in b.inquiries if r.inquiry_id.endswith(".0")
    ]
    assert {k: v.online for k, v in a.agents.items()} == {k: v.online for k, v in b.agents.items()}
    for record in b.agents.values():
        assert all(b.start <= s < e <= b.end for s, e in record.online)
    fair_a, fair_b = (measure(t)["fairness"]["overall"] for t in (a, b))
    assert fair_a["agents"] == fair_b["agents"]
    agent = past.engine.shop(big.id).agents[big.agents[0].id]
    assert agent.observed_since < b.start and agent.arrivals  # the engine learned the past
    for run_, trace in ((none, a), (past, b)):  # explain counts the run's online time only
        explained = explain_shop(run_.engine.shop(big.id), trace.end)
        assert explained["online_ms"] == sum(r.online_ms for r in trace.agents.values())


def test_before_a_double_11_the_past_is_ordinary_days() -> None:
    d11, steady = find_scenario("double11"), find_scenario("steady")
    assert status_planner(d11) is steady.plan
    assert status_planner(find_scenario("uneven_shifts")) is find_scenario("uneven_shifts").plan
    end = status_start(d11)
    assert d11.start - end == 22 * HOUR_MS  # midnight (UTC+8) starting 10 November
    offset = TZ.utcoffset(None)
    assert offset is not None and (end + int(offset.total_seconds() * 1000)) % DAY_MS == 0


def test_history_makes_the_estimate_better_on_a_steady_day(big: ShopConfig) -> None:
    """Seed 2 (BENCHMARKS.md, issue 15): knowing who usually comes online lowers the mean
    absolute error of the announced waits and of the waits under 30 s."""
    errors = {}
    for history in ("none", "30d"):
        e = measure(run(big, "steady", history, seed=2).trace)["estimates"]
        errors[history] = (e["fenliu"]["mae_s"], e["fenliu"]["mare"])
    assert errors["30d"][0] < 0.9 * errors["none"][0]
    assert errors["30d"][1] < errors["none"][1]


def test_an_unknown_history_is_refused(big: ShopConfig) -> None:
    with pytest.raises(ValueError, match=r"unknown history '7d'.*30d, none"):
        run(big, "steady", "7d")
