"""contract §3 rules 1–5: active session, repeat entry, sticky, group matching, the modes."""

from __future__ import annotations

from tests.scenario import Scenario, group, shop

QUEUE = {"enabled": True, "default_cap": 2}


# ------------------------------------------------------------------ rule 1: active session


def test_buyer_in_session_gets_same_agent_with_reason_active_session() -> None:
    sc = Scenario(shop(["a1", "a2"]))
    sc.at("0s").online("a1", "a2")
    sc.inquiry("b1")
    first_agent, _ = sc.assigned("b1")
    second = sc.at("1m").inquiry("b1")
    a = sc.assignment("b1")
    assert (a.agent_id, a.reason.value, a.inquiry_id) == (first_agent, "active_session", second)
    assert a.id == f"asg:{second}" and a.mode is None and a.waited_ms == 0


def test_buyer_already_queued_stays_queued_with_a_waiting_update() -> None:
    sc = Scenario(shop(["a1"], queue={"enabled": True, "default_cap": 1}))
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    first = sc.inquiry("b2")
    sc.at("5s").inquiry("b2")
    updates = sc.updates("b2")
    assert [u.status.value for u in updates] == ["queued", "waiting"]
    assert updates[-1].inquiry_id == first and updates[-1].position == 1
    assert len(sc.assignments("b2")) == 0


# -------------------------------------------------------------------- rule 2: repeat entry


def _ended_session(sc: Scenario, buyer: str) -> str:
    """Give `buyer` a session and let it time out; return the agent it had."""
    sc.inquiry(buyer)
    agent, _ = sc.assigned(buyer)
    sc.after("10m")
    assert sc.closed(buyer)[-1].reason.value == "timeout"
    return agent


def test_repeat_entry_returns_to_previous_agent_even_above_cap() -> None:
    sc = Scenario(shop(["a1"], queue={"enabled": True, "default_cap": 1}))
    sc.at("0s").online("a1")
    _ended_session(sc, "b1")
    sc.inquiry("b2")  # a1 is now at cap 1
    sc.after("5m").inquiry("b1")
    assert sc.assigned("b1") == ("a1", "repeat_entry")
    assert sc.load("a1") == 2


def test_repeat_entry_falls_back_to_group_by_mode_respecting_caps() -> None:
    sc = Scenario(shop(["a1", "a2", "a3"], queue={"enabled": True, "default_cap": 1}))
    sc.at("0s").online("a1")
    prev = _ended_session(sc, "b1")
    sc.online("a2", "a3")
    sc.status("offline", prev)
    sc.inquiry("b2")  # takes one of a2/a3 (cap 1)
    taken, _ = sc.assigned("b2")
    sc.after("1m").inquiry("b1")
    agent, reason = sc.assigned("b1")
    assert reason == "repeat_entry" and agent not in (prev, taken)
    assert sc.assignment("b1").mode is None


def test_repeat_entry_queues_when_previous_agent_and_group_are_unavailable() -> None:
    sc = Scenario(shop(["a1", "a2"], queue={"enabled": True, "default_cap": 1}))
    sc.at("0s").online("a1")
    _ended_session(sc, "b1")
    sc.status("suspended", "a1")
    sc.online("a2")
    sc.inquiry("b2")  # a2 at cap
    sc.after("1m").inquiry("b1")
    assert sc.queue_status("b1") == "queued"


def test_repeat_entry_window_zero_makes_returns_queue_like_anyone() -> None:
    cfg = shop(
        ["a1"], queue={"enabled": True, "default_cap": 1, "repeat_entry_window": 0}, sticky_window=0
    )
    sc = Scenario(cfg)
    sc.at("0s").online("a1")
    _ended_session(sc, "b1")
    sc.inquiry("b2")
    sc.after("1m").inquiry("b1")
    assert sc.queue_status("b1") == "queued"


def test_repeat_entry_does_not_apply_without_queueing_sticky_does() -> None:
    sc = Scenario(shop(["a1", "a2"]))
    sc.at("0s").online("a1")
    _ended_session(sc, "b1")
    sc.online("a2")
    sc.after("1m").inquiry("b1")
    assert sc.assigned("b1") == ("a1", "sticky")


# -------------------------------------------------------------------------- rule 3: sticky


def test_sticky_recent_contact_gets_the_same_agent() -> None:
    sc = Scenario(shop(["a1", "a2"], queue={"enabled": True, "repeat_entry_window": 0}))
    sc.at("0s").online("a1")
    _ended_session(sc, "b1")
    sc.online("a2")
    sc.at("48h").inquiry("b1")
    assert sc.assigned("b1") == ("a1", "sticky")


def test_sticky_outranks_group_matching() -> None:
    cfg = shop(
        ["a1", "v1"],
        groups=[group("vip", ["v1"], match={"crowd": ["vip"]}), group("g", ["a1"])],
    )
    sc = Scenario(cfg)
    sc.at("0s").online("a1", "v1")
    _ended_session(sc, "b1")
    sc.after("1h").inquiry("b1", crowd=["vip"])
    assert sc.assigned("b1") == ("a1", "sticky")


def test_sticky_expires_after_the_window() -> None:
    sc = Scenario(shop(["a1", "a2"], sticky_window="1h", mode="average"))
    sc.at("0s").online("a1")
    _ended_session(sc, "b1")
    sc.online("a2")
    sc.at("2h").inquiry("b1")
    assert sc.assigned("b1") == ("a2", "routed")


def test_sticky_window_zero_turns_stickiness_off() -> None:
    sc = Scenario(shop(["a1", "a2"], sticky_window=0, mode="average"))
    sc.at("0s").online("a1")
    _ended_session(sc, "b1")
    sc.online("a2")
    sc.after("1m").inquiry("b1")
    assert sc.assigned("b1") == ("a2", "routed")


def test_sticky_skips_agent_at_cap_where_queueing_applies() -> None:
    q = {"enabled": True, "default_cap": 1, "repeat_entry_window": 0}
    sc = Scenario(shop(["a1", "a2"], queue=q))
    sc.at("0s").online("a1")
    _ended_session(sc, "b1")
    sc.inquiry("b2")  # a1 at cap
    sc.online("a2")
    sc.inquiry("b1")
    assert sc.assigned("b1") == ("a2", "routed")


def test_sticky_skips_suspended_agent() -> None:
    sc = Scenario(shop(["a1", "a2"]))
    sc.at("0s").online("a1")
    _ended_session(sc, "b1")
    sc.online("a2")
    sc.status("suspended", "a1")
    sc.inquiry("b1")
    assert sc.assigned("b1") == ("a2", "routed")


# ----------------------------------------------------------------- rule 4: group matching

MATCHING = shop(
    ["c", "i", "n", "s", "u1", "u2"],
    groups=[
        group("status", ["s"], match={"order_status": ["shipped"]}, accept_unmatched=False),
        group("intent", ["n"], match={"intents": ["presale"]}, accept_unmatched=False),
        group("item", ["i"], match={"items": ["sku-1"]}, accept_unmatched=False),
        group("crowd", ["c"], match={"crowd": ["vip"]}, accept_unmatched=False),
        group("u1", ["u1"]),
        group("u2", ["u2"]),
    ],
)


def _route(**ctx: object) -> tuple[str, str | None]:
    sc = Scenario(MATCHING)
    sc.at("0s").online("c", "i", "n", "s", "u1", "u2")
    sc.inquiry("b", **ctx)  # type: ignore[arg-type]
    a = sc.assignment("b")
    return a.agent_id, a.group


def test_crowd_beats_item_intent_and_order_status() -> None:
    ctx = {"crowd": ["new", "vip"], "item": "sku-1", "intent": "presale", "order_status": "shipped"}
    assert _route(**ctx) == ("c", "crowd")


def test_item_beats_intent_and_order_status() -> None:
    assert _route(item="sku-1", intent="presale", order_status="shipped") == ("i", "item")


def test_intent_beats_order_status() -> None:
    assert _route(intent="presale", order_status="shipped") == ("n", "intent")


def test_order_status_alone_matches() -> None:
    assert _route(order_status="shipped") == ("s", "status")


def test_first_matching_group_in_file_order_wins() -> None:
    cfg = shop(
        ["a", "b"],
        groups=[
            group("first", ["a"], match={"intents": ["x"]}),
            group("second", ["b"], match={"intents": ["x"]}),
        ],
    )
    sc = Scenario(cfg)
    sc.at("0s").online("a", "b")
    sc.inquiry("b1", intent="x")
    assert sc.assignment("b1").group == "first"


def test_unmatched_buyers_pool_every_accepting_group() -> None:
    sc = Scenario(MATCHING)
    sc.at("0s").online("c", "i", "n", "s", "u1", "u2")
    for n in range(4):
        sc.inquiry(f"b{n}", intent="nothing-matches")
    agents = {a.agent_id for a in sc.assignments()}
    groups = {a.group for a in sc.assignments()}
    assert agents == {"u1", "u2"} and groups == {"u1", "u2"}


def test_inquiry_is_rejected_when_nothing_matches_and_no_group_accepts_unmatched() -> None:
    cfg = shop(["a"], groups=[group("g", ["a"], match={"intents": ["x"]}, accept_unmatched=False)])
    sc = Scenario(cfg)
    sc.at("0s").online("a")
    sc.inquiry("b1", intent="y")
    assert "accept_unmatched" in sc.rejections[-1]
    assert sc.assignments() == [] and sc.updates() == []


def test_agent_listed_in_no_group_never_receives_buyers() -> None:
    sc = Scenario(shop(["a1", "loner"], groups=[group("g", ["a1"])], mode="average"))
    sc.at("0s").online("a1", "loner")
    for n in range(3):
        sc.inquiry(f"b{n}")
    assert {a.agent_id for a in sc.assignments()} == {"a1"}


# ------------------------------------------------------------------------- rule 5: modes


def test_average_gives_the_agent_with_fewest_shift_assignments() -> None:
    sc = Scenario(shop(["a1", "a2", "a3"], mode="average"))
    sc.at("0s").online("a1", "a2", "a3")
    for n in range(9):
        sc.at(f"{n + 1}s").inquiry(f"b{n}")
    assert sc.share(["a1", "a2", "a3"]) == {"a1": 3, "a2": 3, "a3": 3}


def test_average_breaks_ties_by_longest_since_last_assignment() -> None:
    sc = Scenario(shop(["a1", "a2"], mode="average"))
    sc.at("0s").online("a1", "a2")
    sc.inquiry("b1")
    sc.inquiry("b2")
    sc.at("1s").inquiry("b3")
    assert [a.agent_id for a in sc.assignments()] == ["a1", "a2", "a1"]


def test_average_counts_assignments_since_the_agent_last_came_online() -> None:
    sc = Scenario(shop(["a1", "a2"], mode="average", sticky_window=0))
    sc.at("0s").online("a1")
    for n in range(3):
        sc.inquiry(f"x{n}")
    sc.online("a2")
    sc.status("offline", "a1")
    sc.online("a1")  # new shift: a1 is back to zero, a2 is at zero too
    sc.at("1s").inquiry("b1")
    sc.at("2s").inquiry("b2")
    assert sc.share(["a1", "a2"]) == {"a1": 4, "a2": 1}


def test_weighted_shares_follow_weights_smoothly() -> None:
    agents = [{"id": "a1", "weight": 3.0}, {"id": "a2", "weight": 1.0}]
    sc = Scenario(shop(agents, mode="weighted", sticky_window=0))
    sc.at("0s").online("a1", "a2")
    for n in range(400):
        sc.inquiry(f"b{n}")
    assert sc.share(["a1", "a2"]) == {"a1": 300, "a2": 100}
    first8 = [a.agent_id for a in sc.assignments()[:8]]
    assert first8.count("a2") == 2  # interleaved, not four a1 then one a2 in a burst
    assert sc.assignment("b0").mode is not None and sc.assignment("b0").mode.value == "weighted"


def test_efficiency_prefers_lowest_load_per_weight() -> None:
    agents = [{"id": "a1", "weight": 2.0}, {"id": "a2", "weight": 1.0}]
    sc = Scenario(shop(agents, mode="efficiency", sticky_window=0))
    sc.at("0s").online("a1", "a2")
    for n in range(6):
        sc.at(f"{n + 1}s").inquiry(f"b{n}")
    assert sc.share(["a1", "a2"]) == {"a1": 4, "a2": 2}


def test_efficiency_puts_busy_agents_last_even_with_lower_load() -> None:
    sc = Scenario(shop(["a1", "a2"], mode="efficiency", busy_threshold=1, sticky_window=0))
    sc.at("0s").online("a1", "a2")
    for n in range(1, 6):
        sc.inquiry(f"b{n}")
    assert sc.share(["a1", "a2"]) == {"a1": 3, "a2": 2}
    for b in ("b2", "b4"):
        assert sc.assignment(b).agent_id == "a2"
        sc.says(b)  # a2 owes 2 replies > busy_threshold 1: busy
    sc.inquiry("b6")
    assert sc.assigned("b6") == ("a1", "routed")  # load 3 beats busy a2 with load 2
    sc.replies("b2", "a2")  # a2 owes 1 reply: no longer busy
    sc.inquiry("b7")
    assert sc.assigned("b7") == ("a2", "routed")


def test_busy_agent_receives_buyers_when_every_agent_is_busy() -> None:
    sc = Scenario(shop(["a1"], busy_threshold=0))
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    sc.says("b1")
    sc.inquiry("b2")
    assert sc.assigned("b2") == ("a1", "routed")


def test_efficiency_is_the_default_mode() -> None:
    sc = Scenario(shop(["a1"]))
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    mode = sc.assignment("b1").mode
    assert mode is not None and mode.value == "efficiency"


def test_returning_buyer_matching_no_group_still_gets_repeat_entry() -> None:
    """Rules 2-3 come before group matching: no rejection while repeat entry applies."""
    only = group("g", ["a1"], accept_unmatched=False, match={"intents": ["presale"]})
    sc = Scenario(shop(["a1"], groups=[only], queue={"enabled": True, "default_cap": 1}))
    sc.at("0s").online("a1")
    sc.inquiry("b1", intent="presale")
    sc.after("10m")  # timed out
    sc.after("1m").inquiry("b1")  # no intent: matches no group
    assert sc.assigned("b1") == ("a1", "repeat_entry") and sc.rejections == []


def test_repeat_entry_fallback_after_a_pooled_session_stays_in_the_agents_group() -> None:
    cfg = shop(
        ["a1", "a2"],
        groups=[group("g1", ["a1"]), group("g2", ["a2"])],
        queue={"enabled": True, "default_cap": 1},
    )
    sc = Scenario(cfg)
    sc.at("0s").online("a1")
    sc.inquiry("b1")  # the unmatched pool of g1 and g2: a1, group g1
    assert sc.assignment("b1").group == "g1"
    sc.after("10m")
    sc.online("a2")
    sc.status("suspended", "a1")
    sc.after("1m").inquiry("b1")  # a2 is free, but in g2: b1 waits for g1
    u = sc.updates("b1")[-1]
    assert (u.status.value, u.group) == ("queued", "g1") and len(sc.assignments("b1")) == 1
