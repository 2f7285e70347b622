"""Issue 15 item 5: the wait estimate knows who usually comes online (daemon/core/arrivals.py).

Each agent learns, from its `agent_status` changes, when its shifts start and end by time of
week (decayed by the week); a queued buyer's estimate counts the capacity of offline members
expected to come online, and of breaks expected to end.
"""

from __future__ import annotations

from daemon.core.arrivals import (
    BIN_MS,
    DAY_MS,
    DECAY_PER_WEEK,
    WEEK_MS,
    agent_outlook,
    record_status,
    week_bin,
)
from daemon.core.engine import Engine
from daemon.core.model import AgentState
from daemon.core.snapshot import dump_shop, load_shop
from tests.scenario import SHOP, T0, Scenario, shop
from topics.events import AgentStatus, BuyerInquired, InquiryContext, QueueUpdate

ON, SUS, OFF = AgentStatus.ONLINE, AgentStatus.SUSPENDED, AgentStatus.OFFLINE
HOUR = 3_600_000
MINUTE = 60_000


def _shift(agent: AgentState, start: int, end: int) -> None:
    """One shift of `agent`: online at `start`, offline at `end` (the statuses as the shop
    engine would record them)."""
    record_status(agent, OFF, ON, start)
    agent.status = ON
    record_status(agent, ON, OFF, end)
    agent.status = OFF


def test_the_profile_counts_shift_starts_and_ends_by_time_of_week_bin() -> None:
    agent = AgentState("a1", 0)
    monday = 4 * DAY_MS  # epoch day 4 is a Monday; any origin works, bins are UTC
    _shift(agent, monday + 10 * HOUR, monday + 18 * HOUR)
    _shift(agent, monday + DAY_MS + 10 * HOUR + 5 * MINUTE, monday + DAY_MS + 18 * HOUR)
    assert agent.observed_since == monday + 10 * HOUR
    start_bins = {week_bin(monday + 10 * HOUR), week_bin(monday + DAY_MS + 10 * HOUR)}
    assert set(agent.arrivals) == start_bins  # sparse: only the bins it started in
    assert len(agent.departures) == 2
    assert agent.offline_at == monday + DAY_MS + 18 * HOUR
    assert week_bin(monday + 10 * HOUR) == week_bin(monday + 10 * HOUR + 14 * MINUTE)
    assert week_bin(monday + 10 * HOUR) != week_bin(monday + 10 * HOUR + BIN_MS)


def test_old_starts_are_forgotten_by_the_week() -> None:
    agent = AgentState("a1", 0)
    t = 10 * HOUR
    _shift(agent, t, t + HOUR)
    first = week_bin(t)

    def aged(since: int) -> float:  # the weight of one start at `since`, as of profile_at
        return float(DECAY_PER_WEEK ** ((agent.profile_at - since) / WEEK_MS))

    assert abs(agent.arrivals[first] - aged(t)) < 1e-9
    _shift(agent, t + WEEK_MS + 3 * HOUR, t + WEEK_MS + 4 * HOUR)  # a week later, elsewhere
    assert abs(agent.arrivals[first] - aged(t)) < 1e-9
    assert agent.arrivals[first] < DECAY_PER_WEEK
    _shift(agent, t + 60 * WEEK_MS, t + 60 * WEEK_MS + HOUR)  # long gone: dropped
    assert week_bin(t + WEEK_MS + 3 * HOUR) not in agent.arrivals
    assert abs(agent.arrivals[first] - aged(t + 60 * WEEK_MS)) < 1e-9


def _habit(days: int) -> AgentState:
    """An agent who came online at 10:00 (UTC) and left at 18:00 every day for `days`."""
    agent = AgentState("a1", 0)
    for d in range(days):
        _shift(agent, d * DAY_MS + 10 * HOUR, d * DAY_MS + 18 * HOUR)
    return agent


def test_an_offline_agent_is_expected_in_the_bin_it_usually_starts_in() -> None:
    agent = _habit(14)
    now = 14 * DAY_MS + 9 * HOUR + 50 * MINUTE
    coming = agent_outlook(agent, now)
    assert coming, "an agent with a daily habit is expected"
    at, chance = max(coming, key=lambda c: c[1])
    assert week_bin(at) == week_bin(14 * DAY_MS + 10 * HOUR)
    assert chance > 0.8
    assert sum(c for _, c in coming) <= 1.0 + 1e-9
    assert agent_outlook(agent, 14 * DAY_MS + 13 * HOUR) == []  # nothing due for hours


def test_nothing_is_predicted_from_less_than_a_day() -> None:
    agent = AgentState("a1", 0)
    _shift(agent, 10 * HOUR, 11 * HOUR)
    assert agent_outlook(agent, 11 * HOUR + 30 * MINUTE) == []


def _estimate_at_09_50(days_of_history: int) -> int:
    """A queued buyer's announced wait at 09:50 (UTC) in a shop where a1 is online at its
    cap since 09:45 and a2 — offline — came online at 10:00 on each of the previous days."""
    config = shop(
        ["a1", "a2"],
        queue={"enabled": True, "default_cap": 1, "session_timeout": "30m"},
    )
    sc = Scenario(config)
    midnight = -T0 % DAY_MS  # the first UTC midnight from T0 (scenario times are from T0)
    for d in range(days_of_history):
        sc.at(midnight + d * DAY_MS + 10 * HOUR).status("online", "a2")
        sc.at(midnight + d * DAY_MS + 18 * HOUR).status("offline", "a2")
    today = midnight + days_of_history * DAY_MS
    sc.at(today + 9 * HOUR + 45 * MINUTE).online("a1")
    sc.inquiry("busy")
    sc.at(today + 9 * HOUR + 50 * MINUTE).inquiry("b1")
    update = sc.updates("b1")[-1]
    assert update.status.value == "queued" and update.estimated_wait_s is not None
    return update.estimated_wait_s


def test_a_buyer_waiting_for_an_agent_who_usually_starts_soon_is_told_a_shorter_wait() -> None:
    without = _estimate_at_09_50(0)
    with_history = _estimate_at_09_50(14)
    assert without == 25 * 60  # only a1's session timing out frees a slot, at 10:15
    # a2 usually comes at 10:00: expected in the middle of the bin 10:00–10:15
    assert 10 * 60 <= with_history <= 18 * 60


def test_the_profile_survives_a_snapshot_and_the_restored_shop_estimates_the_same() -> None:
    config = shop(["a1", "a2"], queue={"enabled": True, "default_cap": 1})
    sc = Scenario(config)
    for d in range(9):
        sc.at(d * DAY_MS + 2 * HOUR).status("online", "a2")
        sc.at(d * DAY_MS + 2 * HOUR + 40 * MINUTE).status("suspended", "a2")
        sc.at(d * DAY_MS + 2 * HOUR + 50 * MINUTE).status("online", "a2")
        sc.at(d * DAY_MS + 9 * HOUR).status("offline", "a2")
    original = sc.engine.shop(SHOP)
    data = dump_shop(original)
    row = data["agents"]["a2"]
    assert row["arrivals"] and row["departures"] and row["pause_ms"] == 10 * MINUTE
    restored = load_shop(config, data, dedup_capacity=1000)
    a2, back = original.agents["a2"], restored.agents["a2"]
    for name in ("arrivals", "departures", "profile_at", "observed_since", "offline_at"):
        assert getattr(back, name) == getattr(a2, name), name
    now = 9 * DAY_MS + 1 * HOUR + 50 * MINUTE + T0
    assert agent_outlook(back, now) == agent_outlook(a2, now) != []


def test_time_of_week_wins_over_time_of_day_once_weeks_are_seen() -> None:
    """An agent who works 10:00–18:00 on one weekday only: after four weeks, it is expected
    at 10:00 on that weekday, and much less on the others (they lean on the time-of-day
    figure only as a prior); after two days, every day looks alike (the fallback)."""
    weekly = AgentState("a1", 0)
    for w in range(4):
        _shift(weekly, w * WEEK_MS + 10 * HOUR, w * WEEK_MS + 18 * HOUR)
    same_day = 4 * WEEK_MS + 9 * HOUR + 55 * MINUTE
    next_day = same_day + DAY_MS
    expected = sum(c for _, c in agent_outlook(weekly, same_day))
    other = sum(c for _, c in agent_outlook(weekly, next_day))
    assert expected > 0.6 and other < 0.35 and other > 0.0

    daily = _habit(2)
    third = 2 * DAY_MS + 9 * HOUR + 55 * MINUTE
    assert sum(c for _, c in agent_outlook(daily, third)) > 0.6


def test_a_break_ends_after_its_usual_length_unless_the_shift_usually_ends_then() -> None:
    agent = AgentState("a1", 0)
    for d in range(7):  # 10:00–18:00, a 10-minute break at 13:00, a drain from 17:50
        base = d * DAY_MS
        for old, new, at in (
            (OFF, ON, 10 * HOUR),
            (ON, SUS, 13 * HOUR),
            (SUS, ON, 13 * HOUR + 10 * MINUTE),
            (ON, SUS, 17 * HOUR + 50 * MINUTE),
            (SUS, OFF, 18 * HOUR),
        ):
            record_status(agent, old, new, base + at)
            agent.status = new
    assert agent.pause_ms == 10 * MINUTE
    day = 7 * DAY_MS
    record_status(agent, OFF, ON, day + 10 * HOUR)
    record_status(agent, ON, SUS, day + 13 * HOUR)
    agent.status = SUS
    ((at, chance),) = agent_outlook(agent, day + 13 * HOUR + 2 * MINUTE)
    assert at == day + 13 * HOUR + 10 * MINUTE and chance > 0.9
    record_status(agent, SUS, ON, day + 13 * HOUR + 10 * MINUTE)
    record_status(agent, ON, SUS, day + 17 * HOUR + 50 * MINUTE)
    drain = agent_outlook(agent, day + 17 * HOUR + 52 * MINUTE)
    assert sum(c for _, c in drain) < 0.2  # its shift usually ends now: not coming back


def test_a_restored_shop_tells_the_same_waits_while_an_agent_is_on_a_break() -> None:
    """The expected arrivals are cached per candidate for the minute; what a member on a
    break brings back depends on the sessions it still holds, so a message in one of them
    must make the cache be computed again, or a shop restored mid-minute (which computes
    afresh) would announce another wait than the shop that carried on."""
    config = shop(["a2"], queue={"enabled": True, "default_cap": 2, "session_timeout": "10m"})
    sc = Scenario(config)
    midnight = -T0 % DAY_MS
    for d in range(2):  # a2's habit: 08:00–18:00, a 10-minute break at 12:00
        base = midnight + d * DAY_MS
        sc.at(base + 8 * HOUR).online("a2")
        sc.at(base + 12 * HOUR).status("suspended", "a2")
        sc.at(base + 12 * HOUR + 10 * MINUTE).online("a2")
        sc.at(base + 18 * HOUR).status("offline", "a2")
    today = midnight + 2 * DAY_MS
    sc.at(today + 8 * HOUR).online("a2")
    sc.at(today + 11 * HOUR + 55 * MINUTE).inquiry("x1")
    sc.inquiry("x2")  # a2 at its cap; both sessions time out at 12:05 unless x1 writes
    sc.at(today + 12 * HOUR).status("suspended", "a2")
    sc.at(today + 12 * HOUR + MINUTE + 5_000).inquiry("q1")
    first = sc.updates("q1")[-1].estimated_wait_s
    assert first is not None and 8 * 60 <= first <= 9 * 60  # a2 back at 12:10 with 2 slots
    sc.at(today + 12 * HOUR + MINUTE + 20_000).says("x1")  # a2 will come back owing
    sc.says("x2")  # both replies: no slot of its own comes back at 12:10

    restored = Engine({SHOP: config})
    restored.restore_shop(SHOP, sc.engine.snapshot_shop(SHOP))
    now = T0 + today + 12 * HOUR + MINUTE + 40_000
    event = BuyerInquired("i-q2", SHOP, now, "q2", InquiryContext())
    carried_on, again = sc.engine.handle(event, now), restored.handle(event, now)
    assert carried_on == again
    told = [o for o in again if isinstance(o, QueueUpdate)]
    assert told and told[0].estimated_wait_s is not None
    assert told[0].estimated_wait_s == 300  # the seed handle time (5m), no arrival counted
