"""contract §3.6 `[replies] reassign_after`: a buyer whose first message of a session goes
unanswered that long moves to another agent of the same candidate, the silent one excluded;
with nobody to take it, it moves as soon as someone can; never dropped or queued again; a
reply first stops it; sticky and repeat entry do not lead back to the silent agent."""

from __future__ import annotations

import copy

import orjson

from daemon.core.consistency import consistency_problems
from daemon.core.engine import Engine
from daemon.core.explain import explain_shop
from daemon.core.sessions import moved_id
from daemon.core.view import reply_figures
from tests.scenario import SHOP, Scenario, group, shop
from topics.events import Assignment, SessionClosed

QUEUE = {"enabled": True, "default_cap": 1, "session_timeout": "30m"}


def _shop(agents: list[str], **extra: object) -> Scenario:
    config = shop(
        agents,
        groups=[group("g", agents)],
        queue=QUEUE,
        replies={"reassign_after": "100s"},
        **extra,
    )
    return Scenario(config)


def _moves(sc: Scenario) -> list[tuple[str, str, str]]:
    """(kind, agent, inquiry id) of every output with reason `unanswered` (a close's id is
    "end:" and its session's inquiry id)."""
    out = []
    for o in sc.outputs:
        if isinstance(o, Assignment) and o.reason.value == "unanswered":
            out.append(("assignment", o.agent_id, o.inquiry_id))
        if isinstance(o, SessionClosed) and o.reason.value == "unanswered":
            out.append(("closed", o.agent_id, o.id.removeprefix("end:")))
    return out


def _agent_of(sc: Scenario, buyer: str) -> str | None:
    session = sc.engine.shop(SHOP).buyers[buyer].session
    return session.agent_id if session else None


def test_a_first_message_unanswered_for_reassign_after_moves_the_buyer() -> None:
    sc = _shop(["a1", "a2"])
    sc.at("0s").online("a1")
    sc.inquiry("b1", id="i1")  # a1
    sc.at("1s").online("a2")
    sc.at("10s").says("b1")
    sc.at("1m49s")
    assert _moves(sc) == [], "99 s unanswered: not yet"
    sc.at("1m50s")
    assert _moves(sc) == [("closed", "a1", "i1"), ("assignment", "a2", "i1~u1")]
    moved = sc.assignment("b1")
    assert (moved.ts, moved.mode is not None) == (sc.now, True)
    session = sc.engine.shop(SHOP).buyers["b1"].session
    assert session is not None and session.buyer_waiting, "the question moved along"
    assert session.waiting_since == sc.now - 100_000, "with its clock"
    assert sc.load("a1") == 0 and sc.load("a2") == 1
    (figures,) = reply_figures(sc.engine.shop(SHOP), sc.now)["groups"]
    assert figures["reassigned"] == {"unanswered": 1}
    rows = {row["id"]: row for row in explain_shop(sc.engine.shop(SHOP), sc.now)["agents"]}
    assert (rows["a1"]["taken_unanswered"], rows["a2"]["taken_unanswered"]) == (1, 0)
    assert "1 buyer(s) moved away for a first message it did not answer" in rows["a1"]["why"]
    assert "moved to it from agents who did not answer" in rows["a2"]["why"]
    assert consistency_problems(sc.engine.shop(SHOP)) == []


def test_a_reply_before_reassign_after_stops_the_move() -> None:
    sc = _shop(["a1", "a2"])
    sc.at("0s").online("a1", "a2")
    sc.inquiry("b1")
    sc.at("10s").says("b1")
    sc.at("1m").replies("b1", sc.assigned("b1")[0])
    sc.at("1m10s").says("b1")  # not the first message any more: never moved for it
    sc.at("30m")
    assert _moves(sc) == []


def test_off_by_default() -> None:
    sc = Scenario(shop(["a1", "a2"], groups=[group("g", ["a1", "a2"])], queue=QUEUE))
    sc.at("0s").online("a1", "a2")
    sc.inquiry("b1")
    sc.at("10s").says("b1")
    sc.at("29m")
    assert _moves(sc) == []


def test_a_stranded_buyer_moves_first_when_capacity_frees_and_the_line_waits() -> None:
    sc = _shop(["a1", "a2"], sticky_window=0)
    sc.at("0s").online("a1")
    sc.inquiry("b1")  # a1
    sc.at("10s").says("b1")
    sc.at("2m")  # due at 1m50s: a2 offline, nobody to take b1
    assert _moves(sc) == [] and "b1" in sc.engine.shop(SHOP).sessions.stranded
    sc.inquiry("b2")  # a1 at cap: queued
    assert sc.queue_status("b2") == "queued"
    sc.at("3m").online("a2")  # a2's one slot goes to b1, before the line's b2 ...
    assert _agent_of(sc, "b1") == "a2"
    assert _agent_of(sc, "b2") == "a1", "... and a1's slot, freed by the move, to b2"
    kinds = [(type(o).__name__, o.buyer_id) for o in sc.outputs if o.ts == sc.now]
    assert kinds.index(("Assignment", "b1")) < kinds.index(("Assignment", "b2"))
    assert consistency_problems(sc.engine.shop(SHOP)) == []


def test_sticky_and_repeat_entry_do_not_lead_back_to_the_silent_agent() -> None:
    sc = _shop(["a1", "a2"], sticky_window="72h")
    sc.at("0s").online("a1", "a2")
    sc.inquiry("b1")
    silent = sc.assigned("b1")[0]
    sc.at("10s").says("b1")
    sc.at("2m")
    new = _agent_of(sc, "b1")
    assert new is not None and new != silent
    sc.at("3m").replies("b1", new)
    sc.at("40m")  # the session times out (30m)
    sc.at("50m").inquiry("b1")
    assert sc.assignments("b1")[-1].agent_id == new
    assert sc.assignments("b1")[-1].reason.value in ("sticky", "repeat_entry")


def test_a_stranded_session_that_closes_is_no_contact_of_the_silent_agent() -> None:
    """Nor any contact at all: a buyer with no earlier one is forgotten at once, as one who
    leaves a queue (docs/routing.md, Memory), not kept for ever."""
    sc = _shop(["a1", "a2"], sticky_window="72h")
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    sc.at("10s").says("b1")
    sc.at("2m")  # stranded: nobody else online
    sc.at("3m").status("offline", "a1")  # the session closes agent_offline
    assert "b1" not in sc.engine.shop(SHOP).buyers
    assert "b1" not in sc.engine.shop(SHOP).sessions.stranded


def test_no_way_back_through_an_earlier_contact_with_the_agent_who_did_not_answer() -> None:
    """A buyer's earlier, answered contact with a1 must not lead it back to a1 once a1 has
    left its next first message unanswered: it used to stay the buyer's last contact when
    that stranded session closed, and sticky (or repeat entry) went back to a1."""
    sc = _shop(["a1", "a2"], sticky_window="72h")
    sc.at("0s").online("a1")
    sc.inquiry("b1")  # a1
    sc.at("10s").says("b1")
    sc.at("20s").replies("b1", "a1")
    sc.at("31m")  # timed out at 30m20s: the buyer's last contact is a1, who answered
    sc.inquiry("b1")  # repeat entry: a1
    sc.at("31m10s").says("b1")
    sc.at("33m")  # due at 32m50s, nobody else online: stranded
    sc.status("offline", "a1")  # the session closes
    sc.at("34m").online("a1")
    sc.inquiry("b1")
    assert sc.assignment("b1").reason.value == "routed"


def test_no_way_back_through_an_earlier_contact_after_a_move() -> None:
    """The same after a move: the earlier contact with the agent moved away from is
    forgotten, so a later session that ends stranded (no contact) does not bring it back."""
    sc = _shop(["a1", "a2", "a3"], sticky_window="72h")
    sc.at("0s").online("a1")
    sc.inquiry("b1")  # a1
    sc.at("10s").says("b1")
    sc.at("20s").replies("b1", "a1")
    sc.at("31m")  # timed out: the last contact is a1
    sc.inquiry("b1")  # repeat entry: a1
    sc.at("31m10s").says("b1")
    sc.at("32m").online("a2")
    sc.at("32m50s")
    assert _agent_of(sc, "b1") == "a2", "moved away from a1"
    sc.status("offline", "a1")
    sc.at("33m").online("a3")
    sc.transfer("b1", to_agent="a3")  # the question goes along, unanswered
    sc.inquiry("b2")  # a2, now at its cap
    sc.at("35m")  # due at 34m40s, nobody else can take b1: stranded with a3
    sc.status("offline", "a3")
    sc.at("36m").online("a1")
    sc.inquiry("b1")
    assert sc.assignment("b1").reason.value == "routed"


def test_repeat_entrys_fallback_does_not_lead_back_to_the_agent_who_did_not_answer() -> None:
    """After a move from a1 to a2, a2 answers and the session ends; with a2 offline, the
    buyer's return within repeat_entry_window falls back to another agent of a2's group,
    never to a1 (contract §3.6): a3 if it is free, and while a1 alone is free, repeat entry
    does not apply and the buyer is routed (found by the engine harness)."""
    for others, expected in ((["a3"], ("a3", "repeat_entry")), ([], ("a1", "routed"))):
        sc = _shop(["a1", "a2", "a3"], sticky_window="72h")
        sc.at("0s").online("a1", "a2")
        sc.inquiry("b1")  # a1 (efficiency, file order)
        sc.at("5s").says("b1")
        sc.at("2m")
        assert _agent_of(sc, "b1") == "a2", "moved away from a1 at 1m45s"
        sc.replies("b1", "a2")
        sc.at("33m")  # timed out at 32m: the last contact is a2
        sc.status("offline", "a2")
        if others:
            sc.online(*others)
        sc.at("34m").inquiry("b1")
        assert (sc.assignment("b1").agent_id, sc.assignment("b1").reason.value) == expected


def test_a_buyer_moves_once_and_stays_with_a_new_agent_who_is_silent_too() -> None:
    """One move per session: the new agent's silence keeps the buyer (overdue in time), so
    buyers never bounce between slow agents; a restore keeps that."""
    sc = _shop(["a1", "a2", "a3"])
    sc.at("0s").online("a1", "a2", "a3")
    sc.inquiry("b1", id="i1")
    sc.at("10s").says("b1")
    sc.at("1m50s")
    assert [m[2] for m in _moves(sc)] == ["i1", "i1~u1"]
    data = orjson.loads(orjson.dumps(sc.engine.snapshot()))
    sc.engine = Engine.restore({SHOP: sc.config}, copy.deepcopy(data))
    sc.at("29m")
    assert len(_moves(sc)) == 2, "no second move"
    session = sc.engine.shop(SHOP).buyers["b1"].session
    assert session is not None and session.moved and session.overdue


def test_moves_survive_a_snapshot_and_restore() -> None:
    """A buyer due to move with nobody to take it is stranded after a restore too, and moves
    when an agent comes online, exactly as without the restore."""

    def run(cut: bool) -> list[object]:
        sc = _shop(["a1", "a2"])
        sc.at("0s").online("a1")
        sc.inquiry("b1")
        sc.at("10s").says("b1")
        sc.at("2m")
        if cut:
            data = orjson.loads(orjson.dumps(sc.engine.snapshot()))
            sc.engine = Engine.restore({SHOP: sc.config}, copy.deepcopy(data))
        sc.at("3m").online("a2")
        return list(sc.outputs)

    assert run(cut=True) == run(cut=False)


def test_moved_ids_are_unique_and_bounded() -> None:
    assert moved_id("i1") == "i1~u1"
    assert moved_id("i1~u1") == "i1~u2"
    assert moved_id("x~uy") == "x~uy~u1"
    long = moved_id("x" * 128)
    assert len(long) <= 128 and long != moved_id("x" * 127 + "y")


def test_a_move_that_frees_a_slot_lets_a_buyer_stranded_before_it_move_at_once() -> None:
    """A drain moved the stranded buyers in one pass, oldest due first: one whose only way
    out was the slot a later one's move freed stayed stranded beside an eligible agent
    until something else woke its candidate (here, 10 s later)."""
    sc = Scenario(
        shop(
            ["a1", "a2"],
            groups=[group("g", ["a1", "a2"])],
            queue={"enabled": True, "default_cap": 2, "session_timeout": "1m"},
            replies={"reassign_after": "30s"},
            mode="average",
        )
    )
    sc.at("0s").online("a1", "a2")
    for buyer in ("x", "y", "b1", "b2"):
        sc.inquiry(buyer)  # a1: x, b1; a2: y, b2
    sc.at("1s").says("b2")
    sc.at("2s").says("b1")
    sc.at("10s").replies("x", "a1")  # x's session runs until 1m10s
    sc.at("40s")
    assert list(sc.engine.shop(SHOP).sessions.stranded) == ["b2", "b1"], "both agents full"
    sc.at("1m")  # y times out: b1 moves to a2, which frees a slot of a1 for b2
    assert (_agent_of(sc, "b1"), _agent_of(sc, "b2")) == ("a2", "a1")
    assert sc.engine.shop(SHOP).sessions.stranded == {}


def test_a_restart_after_a_move_keeps_the_weighted_round_robin() -> None:
    """Found by the engine harness (snapshot restore no fixed point): a move chooses with
    the silent agent excluded, and in `weighted` mode the virtual time went past that
    agent's pass; a restore starts every eligible agent no earlier than the virtual time,
    so after a restart its turns came later than without one."""

    def run(cut: bool) -> list[tuple[str, str]]:
        config = shop(
            [{"id": "a1"}, {"id": "a2", "weight": 2.0}],
            groups=[group("g", ["a1", "a2"], mode="weighted")],
            replies={"reassign_after": "100s"},
        )
        sc = Scenario(config)
        sc.at("0s").online("a1", "a2")
        sc.inquiry("b0")  # a2
        sc.inquiry("b1")  # a1
        sc.at("10s").says("b0")
        sc.at("2m")  # b0 moves from a2 to a1, passing over a2's lower pass
        if cut:
            data = orjson.loads(orjson.dumps(sc.engine.snapshot()))
            sc.engine = Engine.restore({SHOP: sc.config}, copy.deepcopy(data))
            assert orjson.loads(orjson.dumps(sc.engine.snapshot())) == data
        for buyer in ("b2", "b3", "b4", "b5"):
            sc.inquiry(buyer)
        return [(a.buyer_id, a.agent_id) for a in sc.assignments()]

    assert run(cut=True) == run(cut=False)
