"""daemon.core.view (the JSON API's shop views): what a supervisor sees, read without
changing the engine, in the shapes of docs/api/ (pure: no daemon, time jumped)."""

from __future__ import annotations

from daemon.core.snapshot import dump_shop
from daemon.core.view import experiments_view, shop_summary, shop_view
from tests.api_schemas import api_schema
from tests.grey_shop import grey_scenario
from tests.scenario import SHOP, Scenario, group, shop


def _queueing_shop() -> Scenario:
    config = shop(
        ["a1", {"id": "a2", "cap": 3}, "a3"],
        groups=[
            group("g", ["a1", "a2"]),
            group("h", ["a3"], match={"intents": ["x"]}, accept_unmatched=False),
        ],
        queue={"enabled": True, "default_cap": 1},
        busy_threshold=0,
    )
    sc = Scenario(config)
    sc.at("0s").online("a1", "a2")
    sc.status("suspended", "a2")
    sc.inquiry("b0")  # a1 takes it
    sc.says("b0")  # a1 owes a reply: busy above threshold 0
    sc.after("1s").inquiry("b1")
    sc.after("1s").inquiry("b2", priority=5)  # served before b1
    sc.after("10s")
    return sc


def test_a_shop_view_shows_agents_and_queues_in_serving_order() -> None:
    sc = _queueing_shop()
    engine_shop = sc.engine.shop(sc.config.id)
    before = dump_shop(engine_shop)
    view = shop_view(engine_shop, sc.now)
    assert dump_shop(engine_shop) == before  # read-only
    agents = {a["id"]: a for a in view["agents"]}
    assert agents["a1"] == {
        "id": "a1", "status": "online", "groups": ["g"], "open_sessions": 1, "cap": 1,
        "pending_replies": 1, "oldest_owed_s": 12.0, "past_warn": 0, "overdue": 0,
        "busy": True, "suspended": False,
    }  # fmt: skip
    assert (agents["a2"]["status"], agents["a2"]["suspended"], agents["a2"]["cap"]) == (
        "suspended", True, 3,
    )  # fmt: skip
    assert agents["a3"]["status"] == "offline" and agents["a3"]["groups"] == ["h"]
    lines = {q["group"]: q["buyers"] for q in view["queues"]}
    assert [(b["buyer_id"], b["position"], b["priority"]) for b in lines["g"]] == [
        ("b2", 1, 5),
        ("b1", 2, 0),
    ]
    assert [b["waited_s"] for b in lines["g"]] == [10.0, 11.0]
    assert all(b["estimated_wait_s"] is not None for b in lines["g"])
    assert lines["h"] == []
    api_schema("shop").validate({**view, "config_loaded_at": 0, "decisions": []})


def test_a_shop_summary_counts_online_agents_sessions_and_the_oldest_wait() -> None:
    sc = _queueing_shop()
    summary = shop_summary(sc.engine.shop(sc.config.id), sc.now)
    assert summary == {
        "id": sc.config.id, "agents_online": 1, "open_sessions": 1, "queued": 2,
        "oldest_wait_s": 11.0,
    }  # fmt: skip
    api_schema("shops").validate({"shops": [summary]})


def test_a_shop_view_has_no_experiment_until_one_runs() -> None:
    view = shop_view(_queueing_shop().engine.shop(SHOP), 0)
    assert view["experiment"] is None
    api_schema("shop").validate({**view, "config_loaded_at": 0, "decisions": []})


def test_the_views_of_a_grey_test_give_its_report_the_running_one_and_the_finished() -> None:
    """contract §3.7: `experiment` of the shop view is the running test's report, and the
    experiment view adds the finished ones kept; both in the shapes of docs/api/."""
    sc = grey_scenario()
    engine_shop = sc.engine.shop(SHOP)
    before = dump_shop(engine_shop)
    view = shop_view(engine_shop, sc.now)
    tests = experiments_view(SHOP, engine_shop.state.experiments, sc.now)
    assert dump_shop(engine_shop) == before  # read-only
    api_schema("shop").validate({**view, "config_loaded_at": 0, "decisions": []})
    api_schema("experiment").validate(tests)
    running = view["experiment"]
    assert running == tests["running"] and running["name"] == "t1"
    assert (tests["id"], tests["at"]) == (SHOP, sc.now)
    assert [e["name"] for e in tests["finished"]] == ["t0"]
    assert tests["finished"][0]["ended_at"] == running["started_at"]
    arms = {row["arm"]: row for row in running["arms"]}
    assert arms["control"]["stopped"] is None and arms["control"]["uplift"] is None
    stop = arms["treatment"]["stopped"]
    assert stop["guardrail"] == "replies_within_deadline" and "95% confidence" in stop["why"]
    assert (arms["treatment"]["sessions"], arms["treatment"]["converted"]) == (60, 3)
    assert arms["treatment"]["uplift"]["points"] == -0.05
    assert arms["treatment"]["replies_within_deadline"]["value"] == 0.0
