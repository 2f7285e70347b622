"""contract §3.7 grey tests through the engine: each buyer's arm, the arm's policy in place of
the modes, outputs that carry the arm, counting per arm, guardrails, restarts and reloads."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from daemon.core.engine import Engine
from daemon.core.experiment import Experiment, arm_bucket, report
from daemon.core.plan import dry_run
from daemon.core.snapshot import dump_shop, load_shop
from tests.scenario import SHOP, Scenario, shop
from topics.events import QueueStatus

AGENTS = ["a1", "a2", "a3"]
ARMS = {"control": "efficiency", "treatment": "average"}


def _experiment(**kw: Any) -> dict[str, Any]:
    return {"name": "t1", "arms": ARMS, "split": {"control": 50, "treatment": 50}, **kw}


def _shop(**kw: Any) -> Any:
    kw.setdefault("experiment", _experiment())
    return shop(AGENTS, **kw)


def _buyers(arm: str, n: int, name: str = "t1") -> list[str]:
    """The first `n` buyer ids b0, b1, … that fall in `arm` of a 50/50 experiment `name`."""
    exp = Experiment(_shop(experiment=_experiment(name=name)).experiment, 0)  # type: ignore[arg-type]
    found = [b for b in (f"b{i}" for i in range(10_000)) if exp.arm_of(b) == arm]
    return found[:n]


def test_a_buyers_arm_is_a_stable_hash_of_the_experiment_name_and_the_buyer() -> None:
    assert arm_bucket("t1", "b1") == arm_bucket("t1", "b1")
    exp = Experiment(_shop().experiment, 0)  # type: ignore[arg-type]
    arms = [exp.arm_of(f"b{i}") for i in range(4000)]
    assert 0.46 < arms.count("treatment") / len(arms) < 0.54  # 50/50 by the split
    other = Experiment(_shop(experiment=_experiment(name="t2")).experiment, 0)  # type: ignore[arg-type]
    assert [other.arm_of(f"b{i}") for i in range(4000)] != arms  # another test, another draw


def test_each_arm_is_routed_by_its_policy_in_the_same_group_and_outputs_carry_the_arm() -> None:
    sc = Scenario(_shop())
    sc.at("0s").online(*AGENTS)
    (c,) = _buyers("control", 1)
    (t,) = _buyers("treatment", 1)
    sc.at("1s").inquiry(c)
    sc.at("2s").inquiry(t)
    a_c, a_t = sc.assignment(c), sc.assignment(t)
    assert (a_c.mode and a_c.mode.value, a_c.experiment, a_c.arm) == ("efficiency", "t1", "control")
    assert (a_t.mode and a_t.mode.value, a_t.experiment, a_t.arm) == ("average", "t1", "treatment")
    assert a_c.group == a_t.group == "g"


def test_a_shop_without_an_experiment_puts_no_arm_in_its_outputs() -> None:
    sc = Scenario(shop(AGENTS))
    sc.at("0s").online(*AGENTS)
    sc.inquiry("b1")
    assert (sc.assignment("b1").experiment, sc.assignment("b1").arm) == (None, None)


def test_a_queued_buyer_is_served_by_its_arms_policy_and_its_updates_carry_the_arm() -> None:
    sc = Scenario(_shop(queue={"enabled": True, "default_cap": 1}))
    sc.at("0s").online("a1")
    (c,) = _buyers("control", 1)
    (t,) = _buyers("treatment", 1)
    sc.inquiry(c)
    sc.at("1s").inquiry(t)
    queued = sc.updates(t)[0]
    assert (queued.status, queued.experiment, queued.arm) == (QueueStatus.QUEUED, "t1", "treatment")
    sc.at("10s").online("a2")
    a = sc.assignment(t)
    assert (a.reason.value, a.mode and a.mode.value, a.arm) == ("dequeued", "average", "treatment")
    assert a.waited_ms == 9000
    figures = sc.engine.shop(SHOP).state.experiments.running.figures  # type: ignore[union-attr]
    assert (figures["treatment"].buyers, figures["treatment"].sessions) == (1, 1)
    assert figures["treatment"].waits.total == 1
    assert figures["treatment"].waits.quantile_ms(0.5) >= 9000


def test_orders_waits_and_replies_are_counted_in_the_buyers_arm() -> None:
    sc = Scenario(_shop())
    sc.at("0s").online(*AGENTS)
    cs, ts = _buyers("control", 2), _buyers("treatment", 3)
    for b in cs + ts:
        sc.at("1s").inquiry(b)
    sc.at("2s").says(ts[0])
    sc.at("3s").says(cs[0])  # never answered: no reply counted
    sc.at("4m").replies(ts[0], sc.assignment(ts[0]).agent_id)  # late: past the 3m deadline
    sc.at("4m1s").says(cs[1])
    sc.at("4m2s").replies(cs[1], sc.assignment(cs[1]).agent_id)  # in time
    sc.order(ts[1], 10.0)
    sc.order(ts[1], 5.0)  # a second order of the same session: an order, not a conversion
    exp = sc.engine.shop(SHOP).state.experiments.running
    assert exp is not None
    t, c = exp.figures["treatment"], exp.figures["control"]
    assert (t.buyers, t.sessions, t.converted, t.orders, t.amount) == (3, 3, 1, 2, 15.0)
    assert (c.buyers, c.sessions, c.converted, c.orders) == (2, 2, 0, 0)
    assert (t.replies, t.in_time, c.replies, c.in_time) == (1, 0, 1, 1)


def test_an_order_for_a_session_the_experiment_did_not_count_is_not_counted_after_its_end() -> None:
    """A session opened before the experiment started is not one of its sessions, and an
    order credited to it (contract §1.2) is not counted, during the session or after its end
    alike; otherwise an arm can have more conversions than sessions, and `report` raises."""
    sc = Scenario(shop(AGENTS))
    sc.at("0s").online(*AGENTS)
    during, after = _buyers("treatment", 2)
    sc.at("1s").inquiry(during)
    sc.inquiry(after)
    sc.at("2m").reload(_shop())  # the experiment starts during both sessions
    sc.order(during, 5.0)  # during its session: not counted
    sc.at("3m").status("offline", *AGENTS)  # the sessions end (agent_offline)
    sc.at("4m").order(after, 5.0)  # within conversion_window: credited to its session
    exp = sc.engine.shop(SHOP).state.experiments.running
    assert exp is not None
    t = exp.figures["treatment"]
    assert (t.sessions, t.converted, t.orders) == (0, 0, 0)
    report(exp)  # proportion_interval(converted, sessions) refuses 1 success out of 0


def test_a_guardrail_stops_an_arm_that_is_worse_with_confidence_and_counting_goes_on() -> None:
    rails = {"replies_within_deadline": "-3pp"}
    sc = Scenario(_shop(experiment=_experiment(guardrails=rails)))
    sc.at("0s").online(*AGENTS)
    cs, ts = _buyers("control", 60), _buyers("treatment", 61)
    chats = [(b, 5_000) for b in cs] + [(b, 200_000) for b in ts[:60]]  # treatment answers late
    t = sc.chats(chats)
    exp = sc.engine.shop(SHOP).state.experiments.running
    assert exp is not None
    assert list(exp.stopped) == ["treatment"]
    stop = exp.stopped["treatment"]
    assert stop.guardrail == "replies_within_deadline" and "with 95% confidence" in stop.why
    assert exp.take_news() == ["treatment"] and exp.take_news() == []
    sc.at(t + 10_000).inquiry(ts[60])  # a treatment buyer after the stop: control's policy
    a = sc.assignment(ts[60])
    assert (a.arm, a.mode and a.mode.value) == ("treatment", "efficiency")
    assert exp.figures["treatment"].buyers == 61  # still counted in its arm


def test_identical_arms_are_not_stopped() -> None:
    rails = {"replies_within_deadline": "-3pp", "p95_wait": "+20%"}
    same = {"control": "efficiency", "treatment": "efficiency"}
    sc = Scenario(_shop(experiment=_experiment(arms=same, guardrails=rails)))
    sc.at("0s").online(*AGENTS)
    sc.chats([(f"b{i}", 200_000 if i % 5 == 0 else 5_000) for i in range(200)])
    exp = sc.engine.shop(SHOP).state.experiments.running
    assert exp is not None and exp.stopped == {}
    assert exp.figures["control"].replies + exp.figures["treatment"].replies == 200


def test_arms_figures_and_stopped_arms_survive_a_restart_and_go_on_alike() -> None:
    config = _shop(experiment=_experiment(guardrails={"replies_within_deadline": "-3pp"}))
    sc = Scenario(config)
    sc.at("0s").online(*AGENTS)
    buyers = _buyers("control", 5) + _buyers("treatment", 5)
    for i, b in enumerate(buyers):
        sc.at(1000 + i).inquiry(b)
    sc.order(buyers[0])
    original = sc.engine.shop(SHOP)
    data = dump_shop(original)
    restored = load_shop(config, data, dedup_capacity=1000)
    a, b = original.state.experiments.running, restored.state.experiments.running
    assert a is not None and b is not None
    assert b.learned() == a.learned()
    assert [b.arm_of(x) for x in buyers] == [a.arm_of(x) for x in buyers]
    assert dump_shop(restored) == data


def test_reload_starts_continues_and_ends_experiments_keeping_finished_figures() -> None:
    sc = Scenario(shop(AGENTS))
    sc.at("0s").online(*AGENTS)
    state = sc.engine.shop(SHOP).state
    assert state.experiments.running is None
    sc.at("1m").reload(_shop())
    running = state.experiments.running
    assert running is not None and running.started_at == sc.now
    sc.at("2m").inquiry("b1")
    sc.at("3m").reload(_shop(experiment=_experiment(guardrails={"p95_wait": "+50%"})))
    assert state.experiments.running is running  # a guardrail changed: the same test
    sc.at("4m").reload(_shop(experiment=_experiment(split={"control": 80, "treatment": 20})))
    assert state.experiments.running is not running  # another split: another test
    assert [e.name for e in state.experiments.finished] == ["t1"]
    assert state.experiments.finished[0].figures[running.arm_of("b1")].buyers == 1
    sc.at("5m").reload(shop(AGENTS))
    assert state.experiments.running is None
    assert len(state.experiments.finished) == 2
    sc.at("6m").inquiry("b2")
    assert sc.assignment("b2").arm is None


def test_the_dry_run_says_what_happens_to_an_experiment() -> None:
    engine = Engine({SHOP: shop(AGENTS)})
    new = _shop(experiment=_experiment(guardrails={"p95_wait": "+20%"}))
    (plan,) = dry_run(engine, {SHOP: new}, 0)
    assert plan.changes == (
        "experiment t1 starts: control=efficiency 50%, treatment=average 50%; "
        "guardrails p95_wait +20%",
    )
    engine = Engine({SHOP: _shop()})
    (plan,) = dry_run(engine, {SHOP: _shop(experiment=_experiment(name="t2"))}, 0)
    assert plan.changes[0] == "experiment t1 ends (its figures stay in the report)"
    assert plan.changes[1].startswith("experiment t2 starts")


@pytest.mark.parametrize(
    ("experiment", "problem"),
    [
        ({"arms": {"a": "efficiency", "b": "average"}}, "needs an arm named 'control'"),
        ({"split": {"control": 50, "treatment": 40}}, "add up to 90, not 100"),
        ({"split": {"control": 50, "other": 50}}, "give every arm a share"),
        ({"arms": {"control": "efficiency", "treatment": "fastest"}}, "is not a policy"),
        ({"arms": {"control": "efficiency", "treatment": "average:high"}}, "is not a policy"),
        ({"guardrails": {"p95_wait": "20%"}}, "p95_wait"),
        ({"guardrails": {"speed": "+1%"}}, "unknown guardrail"),
    ],
)
def test_an_invalid_experiment_names_its_problem(experiment: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        _shop(experiment=_experiment(**experiment))


def test_conversion_arm_without_a_strength_takes_each_groups_own() -> None:
    groups = [{"name": "g", "agents": AGENTS, "conversion_strength": "high"}]
    arms = {"control": "efficiency", "treatment": "conversion"}
    config = shop(AGENTS, groups=groups, experiment=_experiment(arms=arms))
    cand = Engine({SHOP: config}).shop(SHOP).routing.cands["g"]
    assert [r.policy for r in cand.rankings] == ["efficiency", "conversion:high"]
    assert cand.policies["conversion"] is cand.policies["conversion:high"]


def test_the_report_gives_each_arm_its_figures_intervals_and_uplift() -> None:
    sc = Scenario(_shop())
    sc.at("0s").online(*AGENTS)
    cs, ts = _buyers("control", 40), _buyers("treatment", 40)
    for i, b in enumerate(cs + ts):
        sc.at(1000 + i).inquiry(b)
    for b in cs[:4] + ts[:12]:
        sc.order(b, 1.0)
    exp = sc.engine.shop(SHOP).state.experiments.running
    assert exp is not None
    rows = {row["arm"]: row for row in report(exp)["arms"]}
    control, treatment = rows["control"], rows["treatment"]
    assert (control["sessions"], control["converted"]) == (40, 4)
    assert control["conversion"]["value"] == 0.1
    assert control["conversion"]["low"] < 0.1 < control["conversion"]["high"]
    assert control["uplift"] is None
    up = treatment["uplift"]
    assert up["points"] == pytest.approx(0.2) and up["relative"] == pytest.approx(2.0)
    assert up["low"] < 0.2 < up["high"]
    assert treatment["p95_wait_s"]["value"] == 0.0 and treatment["stopped"] is None


def test_a_weighted_arm_keeps_its_own_round_robin_beside_controls_mode() -> None:
    agents = [{"id": "a1", "weight": 1.0}, {"id": "a2", "weight": 3.0}]
    arms = {"control": "efficiency", "treatment": "weighted"}
    config = shop(agents, experiment=_experiment(arms=arms))
    sc = Scenario(config)
    sc.at("0s").online("a1", "a2")
    treated = _buyers("treatment", 40)
    for i, b in enumerate(treated):
        sc.at(1000 + i).inquiry(b)
    got = [sc.assignment(b).agent_id for b in treated]
    assert (got.count("a1"), got.count("a2")) == (10, 30)  # 1:3 by weight, whatever the loads
    assert {sc.assignment(b).mode.value for b in treated} == {"weighted"}  # type: ignore[union-attr]
    # the round robin's passes are checkpointed: a restored shop goes on alike
    data = dump_shop(sc.engine.shop(SHOP))
    assert dump_shop(load_shop(config, data, dedup_capacity=1000)) == data


def test_a_conversion_arm_in_an_efficiency_group_favours_the_agent_who_sells() -> None:
    agents = [f"a{i}" for i in range(8)]
    arms = {"control": "efficiency", "treatment": "conversion:high"}
    sc = Scenario(shop(agents, experiment=_experiment(arms=arms)))
    sc.at("0s").online(*agents)
    sc.stats("a3", 0.6)
    for a in agents:
        if a != "a3":
            sc.stats(a, 0.1)
    control, treated = _buyers("control", 16), _buyers("treatment", 16)
    for i, b in enumerate(control + treated):
        sc.at(1000 + i).inquiry(b)
    star = [sc.assignment(b).agent_id for b in treated].count("a3")
    plain = [sc.assignment(b).agent_id for b in control].count("a3")
    assert star > plain
    assert {sc.assignment(b).mode.value for b in treated} == {"conversion"}  # type: ignore[union-attr]
