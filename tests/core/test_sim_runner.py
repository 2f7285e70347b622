"""The policy lab's simulator: determinism, common random numbers, conservation of buyers,
the scenarios and the policy syntax (issue: policy lab, items 1 and 5)."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from daemon.config import load_shop_file
from daemon.core.config import ShopConfig
from daemon.core.engine import Engine
from daemon.lab.policy import ModeChoice, Policy, parse_policy
from daemon.lab.runner import SimRun, simulate
from daemon.lab.scenarios import HOUR_MS, SCENARIOS, consecutive, find_scenario
from daemon.lab.trace import Trace
from topics.events import AgentStatsReported, BuyerInquired, InputEvent, Mode, OutputEvent

SHOPS = Path(__file__).resolve().parents[2] / "config" / "shops"
SCALE = 0.25  # a quarter of a day's buyers: each run well under a second


@pytest.fixture(scope="module")
def big() -> ShopConfig:
    return load_shop_file(SHOPS / "big.toml")


def run(
    shop: ShopConfig, scenario: str = "steady", policy: str = "as-configured", **kw: Any
) -> SimRun:
    kw.setdefault("seed", 11)
    kw.setdefault("scale", SCALE)
    return simulate(shop, scenario, policy=parse_policy(policy), **kw)


def first_visits(trace: Trace) -> list[tuple[str, str, int, str | None, float]]:
    return [
        (r.inquiry_id, r.buyer_id, r.arrived, r.group, r.intent)
        for r in trace.inquiries
        if r.inquiry_id.endswith(".0")
    ]


def test_same_seed_gives_the_same_trace_and_another_seed_another(big: ShopConfig) -> None:
    first = run(big, "double11", "conversion:high").trace.to_json()
    again = run(big, "double11", "conversion:high").trace.to_json()
    other = run(big, "double11", "conversion:high", seed=12).trace.to_json()
    assert first == again
    assert first["inquiries"] != other["inquiries"]


def test_policies_see_the_same_buyers_and_agents(big: ShopConfig) -> None:
    """Common random numbers: same arrivals, contexts, intents, shifts and true rates."""
    sent: list[BuyerInquired] = []

    class Spy:  # wraps the engine (the compiled core's classes take no patching)
        def __init__(self, shops: Any) -> None:
            self.engine = Engine(shops)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.engine, name)

        def handle(self, event: InputEvent, now: int) -> list[OutputEvent]:
            if isinstance(event, BuyerInquired):
                sent.append(event)
            return self.engine.handle(event, now)

    seen = []
    for policy in ("efficiency", "conversion:high", "average", "presale=weighted"):
        sent.clear()
        trace = run(big, "steady", policy, make_engine=Spy).trace
        inquiries = [(e.id, e.ts, e.buyer_id, e.context) for e in sent if e.id.endswith(".0")]
        agents = {a: (r.online, r.true_conversion, r.groups) for a, r in trace.agents.items()}
        seen.append((inquiries, first_visits(trace), agents))
    assert len(seen[0][0]) > 500
    assert all(s == seen[0] for s in seen[1:])


def test_policies_route_differently(big: ShopConfig) -> None:
    """Only routing differs between policies: who serves whom."""
    eff = run(big, policy="efficiency").trace
    avg = run(big, policy="average").trace
    served = {r.inquiry_id: r.agent_id for r in eff.inquiries}
    assert any(served.get(r.inquiry_id) != r.agent_id for r in avg.inquiries)
    assert {r.mode for r in avg.inquiries if r.reason == "routed"} == {"average"}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_scenario_conserves_buyers_on_the_big_shop(big: ShopConfig, scenario: str) -> None:
    """Every arrival ends served, left, expired, rejected or still waiting: exactly one."""
    result = run(big, scenario)
    trace = result.trace
    assert trace.inquiries
    for r in trace.inquiries:
        ends = [r.served_at, r.left_at, r.expired_at, r.rejected]
        assert sum(e is not None for e in ends) <= 1, r
        assert trace.start <= r.arrived <= trace.end
        if r.served_at is not None:
            assert r.agent_id in trace.agents and r.served_at >= r.arrived
            assert r.session_ended is None or r.session_ended >= r.served_at
        if r.left_at is not None or r.expired_at is not None:
            assert r.queued_at is not None
        assert not r.ordered or r.served_at is not None
    shop = result.engine.shop(big.id)
    still_queued = sum(len(c.line.items) for c in shop.all_candidates())
    assert Counter(r.outcome for r in trace.inquiries)["waiting"] == still_queued
    assert trace.queue[-1].waiting == still_queued or trace.queue[-1].at < trace.end
    # queue samples every five minutes over the whole run
    assert trace.queue[0].at == trace.start
    assert len(trace.queue) == (trace.end - trace.start) // 300_000 + 1


def test_queue_samples_follow_the_engine(big: ShopConfig) -> None:
    trace = run(big, "double11").trace
    assert max(s.waiting for s in trace.queue) > 0
    queued = [r for r in trace.inquiries if r.queued_at is not None]
    assert queued and all(r.queue_position and r.queue_position >= 1 for r in queued)
    assert all(r.estimate_s is not None for r in queued)


def test_the_trace_describes_agents_and_caps(big: ShopConfig) -> None:
    trace = run(big).trace
    assert set(trace.agents) == {a.id for a in big.agents}
    assert trace.caps["pre-01"] == 8 and trace.caps["vip-01"] == 4 and trace.caps["gen-02"] == 5
    presale = [r.true_conversion for r in trace.agents.values() if "presale" in r.groups[:1]]
    after = [r.true_conversion for r in trace.agents.values() if r.groups[:1] == ["aftersale"]]
    assert all(0.08 <= c <= 0.35 for c in presale) and all(c <= 0.05 for c in after)
    for record in trace.agents.values():
        assert record.online_ms > 0
        spans = record.online
        assert all(a < b for a, b in spans)
        assert all(b <= c for (_, b), (c, _) in itertools.pairwise(spans))


def test_orders_feed_the_engine_and_follow_true_conversion(big: ShopConfig) -> None:
    result = run(big, scale=0.5, history="none")
    trace = result.trace
    orders = Counter(str(r.agent_id) for r in trace.inquiries if r.ordered)
    shop = result.engine.shop(big.id)
    assert sum(a.orders for a in shop.agents.values()) == sum(orders.values()) > 0
    assert all(a.external_rate is None for a in shop.agents.values())  # learnt, not told
    served = Counter(str(r.agent_id) for r in trace.inquiries if r.served_at is not None)
    rate = {a: orders[a] / n for a, n in served.items() if n >= 30}
    after = [v for a, v in rate.items() if a.startswith("after-")]
    pre = [v for a, v in rate.items() if a.startswith("pre-")]
    assert max(after) < sum(pre) / len(pre)


def test_sticky_buildup_gives_day_one_agents_their_returning_buyers(big: ShopConfig) -> None:
    """On day 3 the agents who worked days 1-2 alone get more buyers per online hour
    (under efficiency, so that conversion priority does not blur stickiness)."""
    trace = run(big, "sticky_buildup", "efficiency").trace
    day3 = trace.start + 48 * HOUR_MS
    veterans = {a for a, r in trace.agents.items() if any(s < day3 for s, _ in r.online)}
    newcomers = set(trace.agents) - veterans
    assert veterans and newcomers
    late = [r for r in trace.inquiries if r.served_at is not None and r.served_at >= day3]
    sticky = Counter(r.agent_id in veterans for r in late if r.reason == "sticky")
    assert sticky[True] > 1.5 * sticky[False]  # half the agents are veterans
    got = Counter(r.agent_id for r in late)
    hours = {
        a: sum(end - max(start, day3) for start, end in r.online if end > day3)
        for a, r in trace.agents.items()
    }

    def per_hour(agents: set[str]) -> float:
        return sum(got[a] for a in agents) / sum(hours[a] for a in agents)

    assert per_hour(veterans) > 1.2 * per_hour(newcomers)


def test_volume_scales_with_the_shop(big: ShopConfig) -> None:
    small = load_shop_file(SHOPS / "small.toml")
    few = run(small, scale=1.0).trace
    many = run(big, scale=1.0).trace
    assert 3 * len(few.inquiries) < len(many.inquiries)
    assert all(cap is None for cap in few.caps.values())  # small.toml does not queue


def test_progress_is_reported_up_to_one(big: ShopConfig) -> None:
    seen: list[float] = []
    run(big, progress=seen.append)
    assert seen[-1] == 1.0
    assert seen == sorted(seen) and seen[0] >= 0.0


def test_days_in_a_row_share_one_engine_and_clock(big: ShopConfig) -> None:
    """`days=3`: the curve and the shifts come back each day, the engine and its clock
    carry on, buyers return across midnight and meet their agent again (sticky)."""
    engines: list[Engine] = []

    def make(shops: Any) -> Engine:
        engines.append(Engine(shops))
        return engines[-1]

    result = run(big, "steady", days=3, make_engine=make)
    trace = result.trace
    assert engines == [result.engine]
    assert trace.end - trace.start == 72 * HOUR_MS
    day = 24 * HOUR_MS
    arrivals = Counter((visit[2] - trace.start) // day for visit in first_visits(trace))
    assert sorted(arrivals) == [0, 1, 2] and min(arrivals.values()) > 0.8 * max(arrivals.values())
    for record in trace.agents.values():  # every agent works every day
        assert {(start - trace.start) // day for start, _ in record.online} == {0, 1, 2}
    later = [r for r in trace.inquiries if r.reason == "sticky" and r.arrived >= trace.start + day]
    assert later
    assert result.engine.shop(big.id).now <= trace.end


def test_only_a_one_day_scenario_runs_days_in_a_row() -> None:
    steady = find_scenario("steady")
    assert consecutive(steady, 1) is steady
    week = consecutive(steady, 7)
    assert (week.start, week.hours) == (steady.start, 168.0)
    assert week.rate(24 * 6 + 21.0) == steady.rate(21.0)
    with pytest.raises(ValueError, match="lasts 72 hours"):
        consecutive(find_scenario("sticky_buildup"), 2)
    with pytest.raises(ValueError, match="days must be 1 or more"):
        consecutive(steady, 0)


def test_an_unknown_scenario_is_refused(big: ShopConfig) -> None:
    with pytest.raises(ValueError, match=r"unknown scenario 'payday'.*steady"):
        run(big, "payday")


# ---------------------------------------------------------------------------- policies


def test_parse_policy_forms() -> None:
    assert parse_policy("as-configured") == Policy()
    assert parse_policy("efficiency").shop == ModeChoice(Mode.EFFICIENCY)
    assert parse_policy(" conversion:high ").shop == ModeChoice(Mode.CONVERSION, "high")
    assert parse_policy("conversion").shop == ModeChoice(Mode.CONVERSION)
    p = parse_policy("average,presale=conversion:low")
    assert p.name == "average,presale=conversion:low"
    assert p.shop == ModeChoice(Mode.AVERAGE)
    assert p.groups == (("presale", ModeChoice(Mode.CONVERSION, "low")),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "cannot be empty"),
        ("fastest", "'fastest' is not a mode"),
        ("efficiency:high", "only to conversion"),
        ("conversion:max", "'max' is not a conversion strength"),
        ("=average", "names no group"),
        ("average,weighted", "more than one shop-wide mode"),
    ],
)
def test_parse_policy_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_policy(text)


def test_policies_rewrite_the_modes(big: ShopConfig) -> None:
    assert Policy().apply(big) is big
    every = parse_policy("conversion:low").apply(big)
    assert every.mode is Mode.CONVERSION
    assert {(g.mode, g.conversion_strength) for g in every.groups} == {(Mode.CONVERSION, "low")}
    one = parse_policy("presale=average").apply(big)
    assert [g.mode for g in one.groups] == [
        Mode.AVERAGE if g.name == "presale" else g.mode for g in big.groups
    ]
    assert one.mode is big.mode
    with pytest.raises(ValueError, match=r"no group 'nope'.*vip, presale"):
        parse_policy("nope=average").apply(big)


def test_oracle_is_conversion_everywhere_ranked_by_true_rates(big: ShopConfig) -> None:
    oracle = parse_policy("oracle")
    assert oracle.oracle and oracle.shop == ModeChoice(Mode.CONVERSION)
    assert oracle.conversion_groups(big) == [g.name for g in big.groups]
    assert parse_policy("efficiency").conversion_groups(big) == []
    trace = run(big, "steady", "oracle").trace
    conv = run(big, "steady", "conversion").trace
    assert trace.inquiries[0].buyer_id == conv.inquiries[0].buyer_id  # the same buyers
    by_mode = Counter(r.mode for r in trace.inquiries if r.served_at is not None)
    assert by_mode["conversion"] > 0 and by_mode["efficiency"] > 0  # min agents still holds
    # among presale buyers routed by conversion, the oracle serves better true converters
    rates = {a: rec.true_conversion for a, rec in trace.agents.items()}

    def mean_rate(t: Trace) -> float:
        picked = [rates[r.agent_id] for r in t.inquiries if r.mode == "conversion" and r.agent_id]
        return sum(picked) / len(picked)

    assert mean_rate(trace) > mean_rate(conv)


def test_the_oracle_refuses_an_engine_of_its_own(big: ShopConfig) -> None:
    with pytest.raises(ValueError, match="oracle"):
        run(big, "steady", "oracle", make_engine=lambda shops: Engine(shops, track=True))


# ---------------------------------------------------------------------------- history


def test_history_30d_feeds_agent_stats_and_none_starts_from_nothing(big: ShopConfig) -> None:
    known = run(big, "steady")  # the default: 30 days of history
    blank = run(big, "steady", history="none")
    assert first_visits(known.trace) == first_visits(blank.trace)  # the same buyers
    truth = {a: rec.true_conversion for a, rec in known.trace.agents.items()}
    learned = known.engine.shop(big.id).agents
    for agent_id, rate in truth.items():
        figure = learned[agent_id].external_rate
        assert figure is not None and abs(figure - rate) < 0.05  # noisy, but close
    assert {a.external_rate for a in blank.engine.shop(big.id).agents.values()} == {None}
    with pytest.raises(ValueError, match="history"):
        run(big, "steady", history="1y")


def test_history_arrives_at_the_start_and_every_midnight(big: ShopConfig) -> None:
    stats: list[int] = []

    class Spy:
        def __init__(self, shops: Any) -> None:
            self.inner = Engine(shops)

        def handle(self, event: InputEvent, now: int) -> list[OutputEvent]:
            if isinstance(event, AgentStatsReported):
                stats.append(event.ts)
            return self.inner.handle(event, now)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    run(big, "steady", days=3, make_engine=Spy, scale=0.05)  # type: ignore[arg-type]
    start = find_scenario("steady").start
    assert sorted(set(stats)) == [start, start + 24 * HOUR_MS, start + 48 * HOUR_MS]
    assert len(stats) == 3 * len(big.agents)
    stats.clear()
    run(big, "steady", make_engine=Spy, scale=0.05, history="none")  # type: ignore[arg-type]
    assert stats == []


def test_hindsight_of_who_leaves_changes_the_estimates_and_nothing_else(big: ShopConfig) -> None:
    """bench/sim.py's gauge of the wait estimate: told which inquiries will leave their line
    unserved (from a first run; the world does not read estimates), the engine announces
    other waits, and everything else happens exactly as before."""
    first = run(big, "double11").trace
    leavers = frozenset(
        r.inquiry_id for r in first.inquiries if r.queued_at is not None and r.served_at is None
    )
    assert leavers
    again = run(big, "double11", leavers=leavers).trace

    def world(t: Trace) -> list[tuple[Any, ...]]:
        return [(r.inquiry_id, r.served_at, r.agent_id, r.left_at, r.ordered) for r in t.inquiries]

    assert world(again) == world(first)
    told = [(r.estimate_s, again.inquiries[i].estimate_s) for i, r in enumerate(first.inquiries)]
    assert any(before != after for before, after in told)
