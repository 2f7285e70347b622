"""contract §3 rule 6, 3.1 queueing, 3.2 session timeouts, and the wait estimate."""

from __future__ import annotations

from typing import Any

from daemon.core.queues import FLUSH_BATCH, FLUSH_GAP_MS
from tests.scenario import Scenario, group, shop


def _q(**kw: Any) -> dict[str, Any]:
    return {"enabled": True, "default_cap": 1, **kw}


# --------------------------------------------------------------------- rule 6 / queueing


def test_buyer_is_queued_when_every_agent_is_at_cap() -> None:
    sc = Scenario(shop(["a1"], queue=_q()))
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    inquiry = sc.inquiry("b2")
    u = sc.updates("b2")[-1]
    assert (u.status.value, u.position, u.group, u.id) == ("queued", 1, "g", f"q:{inquiry}:1")
    assert u.estimated_wait_s is not None and u.estimated_wait_s > 0


def test_without_queueing_there_are_no_caps() -> None:
    sc = Scenario(shop(["a1"], queue={"enabled": False, "default_cap": 1}))
    sc.at("0s").online("a1")
    for n in range(5):
        sc.inquiry(f"b{n}")
    assert sc.load("a1") == 5 and sc.updates() == []


def test_without_queueing_buyers_wait_until_an_agent_comes_online() -> None:
    sc = Scenario(shop(["a1"]))
    sc.at("0s").inquiry("b1")
    assert sc.queue_status("b1") == "queued"
    sc.at("30s").online("a1")
    a = sc.assignment("b1")
    assert (a.agent_id, a.reason.value, a.waited_ms) == ("a1", "dequeued", 30_000)
    assert sc.queue_status("b1") == "dequeued"


def test_queue_serves_higher_priority_first_then_earlier_arrival() -> None:
    sc = Scenario(shop(["a1"], queue=_q()))
    sc.at("0s").online("a1")
    sc.inquiry("busy")
    sc.at("1s").inquiry("early")
    sc.at("2s").inquiry("late")
    sc.at("3s").inquiry("vip", priority=5)
    sc.at("4s").inquiry("later")
    served = []
    for n in range(4):
        sc.after("10m")  # the current session times out, the next buyer is served
        served.append(sc.assignments()[-1].buyer_id)
        assert n == len(served) - 1
    assert served == ["vip", "early", "late", "later"]


def test_queued_buyer_is_served_when_a_session_times_out() -> None:
    sc = Scenario(shop(["a1"], queue=_q()))
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    sc.at("1m").inquiry("b2")
    sc.at("10m")
    assert sc.closed("b1")[-1].reason.value == "timeout"
    a = sc.assignment("b2")
    assert (a.agent_id, a.reason.value, a.waited_ms) == ("a1", "dequeued", 9 * 60_000)


def test_queued_buyer_is_served_when_an_agent_comes_online() -> None:
    sc = Scenario(shop(["a1", "a2"], queue=_q()))
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    sc.inquiry("b2")
    sc.at("5s").online("a2")
    assert sc.assigned("b2") == ("a2", "dequeued")


def test_queued_buyer_is_served_when_an_agent_is_unsuspended() -> None:
    sc = Scenario(shop(["a1", "a2"], queue=_q()))
    sc.at("0s").online("a1", "a2")
    sc.status("suspended", "a2")
    sc.inquiry("b1")
    sc.inquiry("b2")
    assert sc.queue_status("b2") == "queued"
    sc.at("5s").online("a2")
    assert sc.assigned("b2") == ("a2", "dequeued")


def test_raising_a_cap_on_reload_serves_waiting_buyers_at_once() -> None:
    sc = Scenario(shop(["a1"], queue=_q()))
    sc.at("0s").online("a1")
    for n in range(3):
        sc.inquiry(f"b{n}")
    sc.at("5s").reload(shop(["a1"], queue=_q(default_cap=3)))
    assert sc.assigned("b1") == ("a1", "dequeued") and sc.assigned("b2") == ("a1", "dequeued")
    assert sc.load("a1") == 3


def test_scope_groups_queues_only_the_named_groups() -> None:
    cfg = shop(
        ["p1", "f1"],
        groups=[
            group("presale", ["p1"], match={"intents": ["presale"]}),
            group("free", ["f1"]),
        ],
        queue=_q(scope="groups", groups=["presale"]),
    )
    sc = Scenario(cfg)
    sc.at("0s").online("p1", "f1")
    for n in range(3):
        sc.inquiry(f"p{n}", intent="presale")
        sc.inquiry(f"f{n}")
    assert sc.load("p1") == 1 and sc.load("f1") == 3
    assert {u.buyer_id for u in sc.updates()} == {"p1", "p2"}


def test_waiting_updates_are_coalesced_to_one_per_update_interval() -> None:
    sc = Scenario(shop(["a1", "a2"], queue=_q(update_interval="10s")))
    sc.at("0s").online("a1", "a2")
    sc.inquiry("s1")
    sc.inquiry("s2")
    for n in range(4):
        sc.inquiry(f"q{n}")
    sc.at("1s").replies("s1", "a1")
    sc.at("10m")  # s2 times out: q0 is served, q1..q3 move up
    waiting = [u for u in sc.updates() if u.status.value == "waiting"]
    assert {u.buyer_id: u.position for u in waiting} == {"q1": 1, "q2": 2, "q3": 3}
    before = len(sc.updates())
    sc.at("10m1s")  # s1 times out one second later: a second change within the interval
    assert [u.status.value for u in sc.updates()[before:]] == ["dequeued"]
    sc.at("10m11s")
    latest = {u.buyer_id: u.position for u in sc.updates()[before:] if u.status.value == "waiting"}
    assert latest == {"q2": 1, "q3": 2}


def test_a_long_line_is_told_in_slices_front_first() -> None:
    """A tick announces FLUSH_BATCH waiting updates; the rest follow FLUSH_GAP_MS later, so
    one long line's burst never holds up the events behind it (docs/routing.md)."""
    sc = Scenario(shop(["a1", "a2"], queue=_q(update_interval="10s")))
    sc.at("0s").online("a1", "a2")
    sc.inquiry("s1")
    sc.inquiry("s2")
    for n in range(FLUSH_BATCH * 2 + 50):
        sc.inquiry(f"q{n:03d}")
    sc.at("10m")  # both sessions time out: q000 and q001 are served, the line moves up 2
    sc.at("10m1s")
    ticks: dict[int, list[str]] = {}
    for u in sc.updates():
        if u.status.value == "waiting":
            ticks.setdefault(u.ts, []).append(u.buyer_id)
    slices = [ticks[ts] for ts in sorted(ticks)]
    assert [len(s) for s in slices] == [FLUSH_BATCH, FLUSH_BATCH, 48]
    assert [b for s in slices for b in s] == [f"q{n:03d}" for n in range(2, FLUSH_BATCH * 2 + 50)]
    first = min(ticks)
    assert sorted(ticks) == [first, first + FLUSH_GAP_MS, first + 2 * FLUSH_GAP_MS]


def test_buyer_waiting_longer_than_max_wait_expires() -> None:
    sc = Scenario(shop(["a1"], queue=_q(max_wait="5m")))
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    sc.at("1m").inquiry("b2")
    sc.at("5m59s")
    assert sc.queue_status("b2") == "queued"
    sc.at("6m")
    assert sc.queue_status("b2") == "expired"
    sc.at("10m")
    assert sc.assignments("b2") == []


def test_max_wait_zero_waits_forever() -> None:
    sc = Scenario(shop(["a1"], queue=_q(session_timeout="30d")))
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    sc.inquiry("b2")
    sc.at("7d")
    assert sc.queue_status("b2") == "queued"


def test_overflow_moves_buyer_to_another_group_keeping_its_arrival_time() -> None:
    presale = group(
        "presale",
        ["p1"],
        match={"intents": ["presale"]},
        overflow_to="general",
        accept_unmatched=False,
    )
    cfg = shop(
        ["p1", "g1"],
        groups=[presale, group("general", ["g1"])],
        queue=_q(max_wait="5m", session_timeout="6m30s"),
    )
    sc = Scenario(cfg)
    sc.at("0s").online("p1", "g1")
    sc.inquiry("p-busy", intent="presale")
    sc.inquiry("g-busy")
    sc.at("1m").inquiry("early", intent="presale")
    sc.at("2m").inquiry("late")
    sc.at("6m")
    moved = sc.updates("early")[-1]
    assert (moved.status.value, moved.group, moved.position) == ("queued", "general", 1)
    late = sc.updates("late")[-1]
    assert (late.status.value, late.group, late.position) == ("waiting", "general", 2)
    sc.at("6m30s")  # g-busy times out: the overflowed buyer, who came first, goes first
    a = sc.assignment("early")
    assert (a.agent_id, a.group, a.waited_ms) == ("g1", "general", 5 * 60_000 + 30_000)
    assert sc.queue_status("late") == "waiting"


# ------------------------------------------------------------------ 3.2 session timeouts


def test_session_closes_when_agent_last_wrote_longer_ago_than_session_timeout() -> None:
    sc = Scenario(shop(["a1"], queue={"session_timeout": "10m"}))
    sc.at("0s").online("a1")
    inquiry = sc.inquiry("b1")
    sc.at("1m").says("b1")
    sc.at("2m").replies("b1", "a1")
    sc.at("11m59s")
    assert sc.closed("b1") == []
    sc.at("12m")
    c = sc.closed("b1")[-1]
    assert (c.reason.value, c.agent_id, c.id) == ("timeout", "a1", f"end:{inquiry}")


def test_session_stays_open_while_the_buyer_wrote_last() -> None:
    sc = Scenario(shop(["a1"]))
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    sc.at("1m").says("b1")
    sc.at("5h")
    assert sc.closed("b1") == []
    sc.replies("b1", "a1")
    sc.at("5h10m")
    assert sc.closed("b1")[-1].reason.value == "timeout"


def test_session_timeout_applies_with_queueing_off() -> None:
    sc = Scenario(shop(["a1"], queue={"enabled": False, "session_timeout": "1m"}))
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    sc.at("1m")
    assert sc.closed("b1")[-1].reason.value == "timeout"


def test_new_session_without_messages_times_out_from_assignment() -> None:
    sc = Scenario(shop(["a1"]))
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    assert sc.engine.next_deadline() is not None
    sc.at("10m")
    assert sc.closed("b1")[-1].reason.value == "timeout"


def test_next_deadline_lets_a_caller_jump_straight_to_the_timeout() -> None:
    sc = Scenario(shop(["a1"]))
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    deadline = sc.engine.next_deadline()
    assert deadline is not None
    out = sc.engine.on_timer(deadline)
    assert [o.id for o in out] == [f"end:{sc.assignment('b1').inquiry_id}"]


# ------------------------------------------------------------------------ wait estimate


def test_estimate_reads_when_open_sessions_time_out() -> None:
    cfg = shop(["a1", "a2"], queue=_q(avg_handle_time="5m", session_timeout="2m"))
    sc = Scenario(cfg)
    sc.at("0s").online("a1", "a2")
    sc.inquiry("s1")  # a1
    sc.at("30s").inquiry("s2")  # a2: its session ends at 2m30s unless a2 writes again
    sc.at("60s").replies("s1", "a1")  # s1 now ends at 3m
    sc.at("90s")
    for n in range(3):
        sc.inquiry(f"q{n}")
    # slots free at 2m30s and 3m; the third in line waits for the first again, one
    # handle time (5 min, nothing observed yet) later
    assert [sc.updates(f"q{n}")[0].estimated_wait_s for n in range(3)] == [60, 90, 360]


def test_estimate_counts_a_session_whose_buyer_wrote_last_from_now() -> None:
    sc = Scenario(shop(["a1"], queue=_q(session_timeout="2m")))
    sc.at("0s").online("a1")
    sc.inquiry("s1")
    sc.at("50s").says("s1")  # the agent owes a reply: no timeout runs; at least 2 min more
    sc.inquiry("q")
    assert sc.updates("q")[0].estimated_wait_s == 120


def test_waiting_updates_follow_the_predicted_moment_not_the_clock() -> None:
    sc = Scenario(shop(["a1"], queue=_q(session_timeout="2m", update_interval="10s")))
    sc.at("0s").online("a1")
    sc.inquiry("s1")
    sc.inquiry("q")
    assert sc.updates("q")[0].estimated_wait_s == 120
    sc.at("40s")  # time passing alone announces nothing: the moment of service holds
    assert len(sc.updates("q")) == 1
    sc.replies("s1", "a1")  # the session now ends at 2m40s, 40 s later than announced
    sc.at("45s")
    update = sc.updates("q")[-1]
    assert (update.status.value, update.position, update.estimated_wait_s) == ("waiting", 1, 120)
    assert update.ts == sc.engine.shop(sc.config.id).now - 5_000  # published at 40 s


def test_estimate_learns_the_observed_handle_time() -> None:
    cfg = shop(["a1"], queue=_q(avg_handle_time="5m", session_timeout="1m"))
    sc = Scenario(cfg)
    sc.at("0s").online("a1")
    for n in range(40):  # sessions of one minute each
        sc.inquiry(f"x{n}")
        sc.after("1m")
    sc.inquiry("s")
    sc.inquiry("q")
    assert sc.updates("q")[0].estimated_wait_s == 60


def test_estimate_with_nobody_online_is_one_handle_time_per_round_of_capacity() -> None:
    sc = Scenario(shop(["a1", "a2"], queue=_q(avg_handle_time="4m")))
    sc.at("0s")
    for n in range(3):
        sc.inquiry(f"q{n}")
    assert [sc.updates(f"q{n}")[0].estimated_wait_s for n in range(3)] == [240, 240, 480]


def test_estimate_expects_buyers_ahead_to_give_up_as_often_as_they_have() -> None:
    cfg = shop(["a1"], queue=_q(avg_handle_time="5m", session_timeout="2m"))
    sc = Scenario(cfg)
    sc.at("0s").online("a1")
    sc.inquiry("s1")  # a1 is at its cap until 2m
    sc.at("10s")
    for n in range(14):  # fourteen buyers queue and give up: stay = 0.95 ** 14 ≈ 0.49
        sc.inquiry(f"gone{n}")
        sc.leave(f"gone{n}")
    sc.at("20s")
    for n in range(3):
        sc.inquiry(f"q{n}")
    # ahead = round((position - 1) × 0.49): 0, 0, 1; a slot frees at 2m, then every 5 min
    # (with nobody giving up the three would hear 100, 400 and 700 s)
    assert [sc.updates(f"q{n}")[0].estimated_wait_s for n in range(3)] == [100, 100, 400]


def _px_behind_a_line_sharing_its_agent() -> Scenario:
    """pre = [a1] and after = [a1, a2, a3], every agent busy until 2m; at 10 s two buyers
    join after's line, at 20 s px joins pre's."""
    cfg = shop(
        ["a1", "a2", "a3"],
        groups=[
            group("pre", ["a1"], match={"intents": ["presale"]}),
            group("after", ["a1", "a2", "a3"], match={"intents": ["aftersale"]}),
        ],
        queue=_q(avg_handle_time="2m", session_timeout="2m", update_interval="10s"),
    )
    sc = Scenario(cfg)
    sc.at("0s").online("a1", "a2", "a3")
    sc.inquiry("s1", intent="presale")  # a1 until 2m
    sc.inquiry("s2", intent="aftersale")  # a2
    sc.inquiry("s3", intent="aftersale")  # a3
    sc.at("10s")
    sc.inquiry("ax1", intent="aftersale")
    sc.inquiry("ax2", intent="aftersale")
    sc.at("20s").inquiry("px", intent="presale")
    return sc


def test_estimate_counts_older_buyers_of_queues_that_share_the_agents() -> None:
    sc = _px_behind_a_line_sharing_its_agent()
    # a1, px's only agent, is a third of after's capacity: of after's two older buyers,
    # 2/3 ≈ 1 is expected to take a1's slot at 2m first; px gets the one after, 2m later
    assert sc.updates("px")[0].estimated_wait_s == 220
    sc.at("60s").replies("s2", "a2")
    sc.replies("s3", "a3")  # a2 and a3 are now busy until 3m
    sc.at("2m")
    assert sc.assigned("ax1") == ("a1", "dequeued")  # the older head takes a1's slot
    sc.at("4m")
    assert sc.assigned("px") == ("a1", "dequeued")
    assert sc.assignment("px").waited_ms == 220_000


def test_a_line_sharing_the_agents_emptying_brings_the_estimate_forward() -> None:
    sc = _px_behind_a_line_sharing_its_agent()
    assert sc.updates("px")[0].estimated_wait_s == 220
    sc.at("30s")
    sc.leave("ax1")
    sc.leave("ax2")  # nobody older waits for a1 now: px is next when s1 ends at 2m
    sc.at("40s")
    update = sc.updates("px")[-1]
    assert (update.status.value, update.position, update.estimated_wait_s) == ("waiting", 1, 90)
