"""contract §3.6 reply clocks (and §3.4 `overdue_is_busy`): a buyer's message starts its
session's clock, the agent's next message stops it; a buyer becomes overdue `deadline` after
its clock started; each group counts its reply times; a transfer moves a running clock."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from daemon.core.engine import Engine
from daemon.core.model import Session
from daemon.core.plan import changes
from daemon.core.replies import HOUR_MINUTES, MINUTE_MS, REPLY_BUCKETS_MS, ReplyFigures
from daemon.core.shop import ShopEngine
from daemon.core.view import reply_figures, shop_view
from tests.scenario import SHOP, T0, Scenario, group, shop


def _shop(sc: Scenario) -> ShopEngine:
    return sc.engine.shop(SHOP)


def _session(sc: Scenario, buyer: str) -> Session:
    session = _shop(sc).buyers[buyer].session
    assert session is not None
    return session


def _figures(sc: Scenario, name: str = "g") -> dict[str, Any]:
    groups: list[dict[str, Any]] = reply_figures(_shop(sc), sc.now)["groups"]
    (found,) = [g for g in groups if g["group"] == name]
    return found


def _agent(sc: Scenario, agent: str) -> dict[str, Any]:
    agents: list[dict[str, Any]] = shop_view(_shop(sc), sc.now)["agents"]
    (found,) = [a for a in agents if a["id"] == agent]
    return found


def _overdue(sc: Scenario) -> dict[str, tuple[int, bool]]:
    """(overdue buyers, busy) per agent, as the engine holds them."""
    return {a.id: (a.overdue, a.busy) for a in _shop(sc).agents.values()}


def _one_agent(**replies: Any) -> Scenario:
    sc = Scenario(shop(["a1"], replies=replies))
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    return sc


# ------------------------------------------------------------------------ the clock


def test_a_buyer_message_starts_the_clock_and_the_agents_next_message_stops_it() -> None:
    sc = _one_agent()
    assert _agent(sc, "a1")["oldest_owed_s"] is None  # the assignment starts no clock
    sc.at("10s").says("b1")
    sc.at("30s").says("b1")  # the clock runs already: it keeps its start
    sc.at("40s")
    assert (_agent(sc, "a1")["oldest_owed_s"], _agent(sc, "a1")["pending_replies"]) == (30.0, 1)
    sc.at("70s").replies("b1", "a1")  # reply time 60 s
    sc.at("80s").replies("b1", "a1")  # no clock runs: not a reply
    figures = _figures(sc)
    assert (figures["replies_last_hour"], figures["within_deadline_last_hour"]) == (1, 1)
    assert figures["share_within_deadline"] == 1.0
    assert figures["reply_seconds"] == {
        "le": [10.0, 30.0, 60.0, 100.0, 120.0, 180.0, 300.0, 600.0, None],
        "counts": [0, 0, 1, 1, 1, 1, 1, 1, 1],  # 60 s is in the bucket of 60 s
        "sum": 60.0,
        "count": 1,
    }
    assert _agent(sc, "a1")["oldest_owed_s"] is None
    assert _session(sc, "b1").waiting_since == 0


@pytest.mark.parametrize(("reply_ms", "within"), [(120_000, 1), (120_001, 0), (119_999, 1)])
def test_a_reply_later_than_the_deadline_is_late(reply_ms: int, within: int) -> None:
    """A reply at exactly `deadline` is within it (contract §3.6: later than it is late)."""
    sc = _one_agent(deadline="2m")
    sc.at("10s").says("b1")
    sc.at(10_000 + reply_ms).replies("b1", "a1")
    assert _figures(sc)["within_deadline_last_hour"] == within
    assert _figures(sc)["replies_last_hour"] == 1


def test_a_session_the_agent_wrote_in_is_answered() -> None:
    """What `reassign_after` will read (first messages only): whether the agent wrote in
    the session (the assignment's greeting is not a message)."""
    sc = _one_agent()
    assert _session(sc, "b1").answered is False
    sc.at("10s").says("b1")
    assert _session(sc, "b1").answered is False
    sc.at("20s").replies("b1", "a1")
    assert _session(sc, "b1").answered is True


# ------------------------------------------------------------------------- overdue


def test_a_buyer_is_overdue_exactly_deadline_after_its_clock_started() -> None:
    sc = _one_agent(deadline="30s", warn_after="20s")
    sc.at("10s").says("b1")
    assert sc.engine.next_deadline() == T0 + 40_000  # the OVERDUE timer
    sc.at(29_999)
    assert (_agent(sc, "a1")["past_warn"], _agent(sc, "a1")["overdue"]) == (0, 0)
    sc.at("30s")  # warned from 20 s on
    assert (_agent(sc, "a1")["past_warn"], _agent(sc, "a1")["overdue"]) == (1, 0)
    sc.at(39_999)
    assert _overdue(sc) == {"a1": (0, False)}
    sc.at("40s")
    assert _overdue(sc) == {"a1": (1, True)}  # overdue_is_busy: busy (pending 1 <= 4)
    assert (_figures(sc)["overdue"], _agent(sc, "a1")["busy"]) == (1, True)
    sc.at("45s").replies("b1", "a1")
    assert _overdue(sc) == {"a1": (0, False)}
    assert (_figures(sc)["overdue"], _figures(sc)["within_deadline_last_hour"]) == (0, 0)


def _efficiency(**replies: Any) -> Scenario:
    """a1 (weight 2) and a2 share g; a1 has b1, a2 has b2; b1 writes at 10s."""
    agents: list[dict[str, Any]] = [{"id": "a1", "weight": 2.0}, {"id": "a2"}]
    config = shop(agents, replies={"deadline": "1m", **replies})
    sc = Scenario(config)
    sc.at("0s").online("a1", "a2")
    sc.inquiry("b1")  # a1 (a tie: file order)
    sc.inquiry("b2")  # a2: load / weight 0 against a1's 0.5
    sc.at("10s").says("b1")
    return sc


def test_an_overdue_buyer_makes_its_agent_busy_in_efficiency_mode_until_the_reply() -> None:
    sc = _efficiency()
    sc.at("1m9s").inquiry("b3")
    assert sc.assigned("b3") == ("a1", "routed")  # 1/2 < 1/1: a1, its buyer not yet overdue
    sc.at("1m10s").inquiry("b4")
    assert sc.assigned("b4") == ("a2", "routed")  # a1 busy: b1 is overdue, a2 not busy
    sc.at("1m20s").replies("b1", "a1")
    sc.inquiry("b5")
    assert sc.assigned("b5") == ("a1", "routed")  # 2/2 < 2/1, a1 no longer busy
    assert _shop(sc).agents["a1"].assigned_while_busy == 0


def test_without_overdue_is_busy_an_overdue_buyer_changes_no_rank() -> None:
    sc = _efficiency(overdue_is_busy=False)
    sc.at("1m10s").inquiry("b3")
    assert sc.assigned("b3") == ("a1", "routed")
    assert _overdue(sc)["a1"] == (1, False)
    assert _agent(sc, "a1")["overdue"] == 1


def test_a_buyer_is_overdue_before_anything_else_decided_at_the_same_moment() -> None:
    """The OVERDUE timer fires first among timers due at once: b3 overflows to g2 at 30s,
    the moment a1's buyer becomes overdue, and goes to a2, a1 being busy then."""
    agents: list[dict[str, Any]] = [{"id": "a0"}, {"id": "a1", "weight": 2.0}, {"id": "a2"}]
    config = shop(
        agents,
        groups=[
            group(
                "g1",
                ["a0"],
                match={"intents": ["presale"]},
                accept_unmatched=False,
                overflow_to="g2",
            ),
            group("g2", ["a1", "a2"]),
        ],
        queue={
            "enabled": True,
            "scope": "groups",
            "groups": ["g1"],
            "default_cap": 1,
            "max_wait": "30s",
        },
        replies={"deadline": "20s"},
    )
    sc = Scenario(config)
    sc.at("0s").online("a0", "a1", "a2")
    sc.inquiry("b0", intent="presale")  # a0, at its cap
    sc.inquiry("b1")  # g2: a1
    sc.inquiry("b2")  # g2: a2 (0 against 0.5)
    sc.inquiry("b3", intent="presale")  # g1's line; max_wait runs out at 30s
    sc.at("10s").says("b1")  # a1's buyer is overdue at 30s
    sc.at("30s")
    assert sc.assigned("b3") == ("a2", "dequeued")  # a1: 1/2 < 1/1, but busy


# ------------------------------------------------------------------- leaving a session


def test_a_transfer_moves_the_running_clock_with_the_question() -> None:
    sc = Scenario(shop(["a1", "a2"], replies={"deadline": "30s"}))
    sc.at("0s").online("a1", "a2")
    sc.inquiry("b1")  # a1
    sc.at("10s").says("b1")
    sc.at("50s")  # overdue since 40s
    assert _overdue(sc) == {"a1": (1, True), "a2": (0, False)}
    sc.transfer("b1", to_agent="a2")
    assert _overdue(sc) == {"a1": (0, False), "a2": (1, True)}
    session = _session(sc, "b1")
    assert (session.agent_id, session.waiting_since, session.answered) == ("a2", T0 + 10_000, False)
    assert _figures(sc)["overdue"] == 1
    sc.at("70s").replies("b1", "a2")
    figures = _figures(sc)
    assert (figures["replies_last_hour"], figures["within_deadline_last_hour"]) == (1, 0)
    assert figures["reply_seconds"]["sum"] == 60.0  # from the buyer's message, not the transfer


def test_a_clock_moved_by_a_transfer_keeps_its_deadline() -> None:
    sc = Scenario(shop(["a1", "a2"], replies={"deadline": "30s"}))
    sc.at("0s").online("a1", "a2")
    sc.inquiry("b1")
    sc.at("10s").says("b1")
    sc.at("20s").transfer("b1", to_agent="a2")
    sc.at(39_999)
    assert _overdue(sc)["a2"] == (0, False)
    sc.at("40s")
    assert _overdue(sc)["a2"] == (1, True)


def test_a_closed_session_takes_its_clock_along_uncounted() -> None:
    sc = Scenario(shop(["a1", "a2"], replies={"deadline": "30s"}))
    sc.at("0s").online("a1", "a2")
    sc.inquiry("b1")  # a1
    sc.at("10s").says("b1")
    sc.at("1m")
    assert _figures(sc)["overdue"] == 1
    sc.status("offline", "a1")  # closes b1's session: no reply, nobody overdue
    assert [c.reason.value for c in sc.closed("b1")] == ["agent_offline"]
    assert _overdue(sc) == {"a1": (0, False), "a2": (0, False)}
    figures = _figures(sc)
    counted = (figures["overdue"], figures["replies_last_hour"], figures["reply_seconds"]["count"])
    assert counted == (0, 0, 0)
    assert sc.engine.next_deadline() is None


# ------------------------------------------------------------------- restore, reload


def _restored(sc: Scenario) -> Scenario:
    """`sc` going on from a snapshot through JSON, on a fresh engine."""
    data = orjson.loads(orjson.dumps(sc.engine.snapshot()))
    twin = Scenario(sc.config)
    twin.engine, twin.now = Engine.restore({SHOP: sc.config}, data), sc.now
    twin.engine.now = sc.engine.now
    return twin


@pytest.mark.parametrize("at", ["20s", "45s"])
def test_a_restore_mid_clock_goes_on_like_the_uninterrupted_shop(at: str) -> None:
    """Restored before and after the buyer became overdue: the same overdue count and
    busyness, the same next deadline, the same reply time and figures."""
    sc = _one_agent(deadline="30s")
    sc.at("1m").says("b1")
    sc.at("1m10s").replies("b1", "a1")  # figures learned before the snapshot
    sc.at("1m15s").says("b1")
    sc.after(at)
    twin = _restored(sc)
    assert _overdue(twin) == _overdue(sc)
    assert twin.engine.next_deadline() == sc.engine.next_deadline()
    for run in (sc, twin):
        run.after("1m").replies("b1", "a1")
    assert _figures(twin) == _figures(sc)
    assert _figures(twin)["reply_seconds"]["count"] == 2
    state, went_on = sc.engine.snapshot_shop(SHOP), twin.engine.snapshot_shop(SHOP)
    assert {**went_on, "seen": None} == {**state, "seen": None}  # event ids: each its own


def test_a_reload_keeps_running_clocks_and_judges_them_by_the_new_deadline() -> None:
    """Running clocks keep their start; who is overdue follows the deadline in force at
    once, and the OVERDUE timers are armed again for it; figures are kept."""
    sc = _one_agent()
    sc.at("0s").says("b1")
    sc.at("5s").replies("b1", "a1")
    sc.at("10s").says("b1")
    sc.at("1m10s")
    assert _overdue(sc) == {"a1": (0, False)}
    shorter = shop(["a1"], replies={"deadline": "30s"})
    assert "replies.deadline: 180000 -> 30000" in changes(sc.config, shorter)
    sc.reload(shorter)
    assert _overdue(sc) == {"a1": (1, True)}  # 60 s past a 30 s deadline: overdue at once
    sc.at("1m20s").reload(shop(["a1"], replies={"deadline": "2m"}))
    assert _overdue(sc) == {"a1": (0, False)}
    assert sc.engine.next_deadline() == T0 + 130_000  # 10 s + 2 m: the clock kept its start
    sc.at(129_999)
    assert _overdue(sc) == {"a1": (0, False)}
    sc.at("2m10s")
    assert _overdue(sc) == {"a1": (1, True)}
    sc.at("2m20s").replies("b1", "a1")
    figures = _figures(sc)
    assert (figures["replies_last_hour"], figures["within_deadline_last_hour"]) == (2, 1)


# ------------------------------------------------------------------ the figures alone


def test_replies_older_than_the_hour_leave_the_share_but_stay_in_the_distribution() -> None:
    sc = _one_agent()
    sc.at("0s").says("b1")
    sc.at("4m").replies("b1", "a1")  # late
    sc.at("10m").says("b1")
    sc.at("10m10s").replies("b1", "a1")
    assert _figures(sc)["share_within_deadline"] == 0.5
    sc.at("1h5m")  # the late reply's minute is more than an hour ago
    figures = _figures(sc)
    assert (figures["replies_last_hour"], figures["share_within_deadline"]) == (1, 1.0)
    assert figures["reply_seconds"]["count"] == 2
    sc.at("3h")
    assert _figures(sc)["share_within_deadline"] is None


def test_each_group_counts_the_replies_of_its_own_sessions() -> None:
    config = shop(
        ["a1", "a2"],
        groups=[group("pre", ["a1"], match={"intents": ["presale"]}), group("post", ["a2"])],
    )
    sc = Scenario(config)
    sc.at("0s").online("a1", "a2")
    sc.inquiry("b1", intent="presale")
    sc.inquiry("b2")
    sc.says("b1")
    sc.says("b2")
    sc.at("20s").replies("b1", "a1")
    counts = {g: _figures(sc, g)["replies_last_hour"] for g in ("pre", "post")}
    assert counts == {"pre": 1, "post": 0}
    assert {g: _figures(sc, g)["reassigned"] for g in ("pre", "post")} == {
        "pre": {"unanswered": 0}, "post": {"unanswered": 0},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("reply_ms", "bucket"),
    [(0, 0), (10_000, 0), (10_001, 1), (180_000, 5), (180_001, 6), (600_000, 7), (600_001, 8)],
)
def test_a_reply_time_goes_in_the_first_bucket_at_or_above_it(reply_ms: int, bucket: int) -> None:
    figures = ReplyFigures()
    figures.observe(reply_ms, within=True, now=T0)
    assert figures.hist == [int(i == bucket) for i in range(len(REPLY_BUCKETS_MS) + 1)]
    assert figures.cumulative() == [int(i >= bucket) for i in range(len(REPLY_BUCKETS_MS) + 1)]


def test_the_ring_counts_the_current_minute_and_the_59_before() -> None:
    figures = ReplyFigures()
    start = (T0 // MINUTE_MS) * MINUTE_MS
    for minute in range(0, 150, 7):
        figures.observe(1000, within=minute % 2 == 0, now=start + minute * MINUTE_MS)
        for now in (start + minute * MINUTE_MS, start + (minute + 30) * MINUTE_MS):
            seen = [m for m in range(0, minute + 1, 7) if m > (now - start) // MINUTE_MS - 60]
            assert figures.last_hour(now) == (len(seen), sum(1 for m in seen if m % 2 == 0))
    assert figures.last_hour(start + 400 * MINUTE_MS) == (0, 0)
    copy = ReplyFigures()
    copy.restore(orjson.loads(orjson.dumps(figures.learned())))
    assert copy.learned() == figures.learned()
    assert (copy.ring_replies, copy.ring_within, copy.hist) == (
        figures.ring_replies, figures.ring_within, figures.hist,
    )  # fmt: skip
    assert len(figures.learned()["ring"]) <= HOUR_MINUTES  # type: ignore[arg-type]


def test_figures_stored_before_the_reply_clocks_count_from_none() -> None:
    figures = ReplyFigures()
    figures.restore({})
    assert (figures.hist, figures.hist_sum_ms, figures.last_hour(T0)) == (
        [0] * (len(REPLY_BUCKETS_MS) + 1), 0, (0, 0),
    )  # fmt: skip
