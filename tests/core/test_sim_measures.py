"""The measures of one policy's run, on hand-made traces whose figures are worked out here."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon.lab.measures import (
    asterisk_estimates,
    estimate_points,
    gini,
    jain,
    max_min_share,
    measure,
    percentile,
    rocketchat_estimates,
)
from daemon.lab.trace import AgentRecord, InquiryRecord, Trace
from daemon.lab.world import INTENT_MEAN

S = 1000  # ms
H = 3_600_000  # ms


def _trace(
    inquiries: list[InquiryRecord],
    agents: list[AgentRecord] | None = None,
    caps: dict[str, int | None] | None = None,
) -> Trace:
    return Trace(
        policy="efficiency",
        scenario="hand",
        seed=7,
        start=0,
        end=24 * H,
        caps=caps or {},
        inquiries=inquiries,
        agents={a.agent_id: a for a in agents or []},
    )


def _inq(name: str, group: str | None = "g", **kw: Any) -> InquiryRecord:
    kw.setdefault("arrived", 0)
    return InquiryRecord(inquiry_id=name, buyer_id=f"buyer-{name}", group=group, **kw)


def _queued(
    name: str, queued: int, served: int | None, est: int | None, **kw: Any
) -> InquiryRecord:
    kw.setdefault("queue_group", "g")
    return _inq(
        name,
        arrived=queued,
        queued_at=queued,
        served_at=served,
        estimate_s=est,
        agent_id="a1",
        **kw,
    )


# ----------------------------------------------------------------- wait-estimate errors


def _estimate_case() -> Trace:
    """Queue g: b1..b4, b7 (zero wait), b8 (no estimate); the pool queue: b6; b9 left."""
    return _trace(
        [
            _queued("b1", 0 * S, 10 * S, 12),  # real 10, Fenliu +0.2
            _queued("b2", 5 * S, 30 * S, 20),  # real 25, Fenliu -0.2
            _queued("b3", 10 * S, 18 * S, 8),  # enters as b1 is answered: not yet seen; exact
            _queued("b4", 40 * S, 45 * S, 6),  # real 5, Fenliu +0.2
            _queued("b6", 45 * S, 47 * S, 2, queue_group=None),  # the pool's own average: 0
            _queued("b7", 60 * S, 60 * S, 0),  # zero wait: in the history, not measured
            _queued("b8", 61 * S, 70 * S, None),  # no Fenliu estimate: not measured
            _queued("b9", 62 * S, None, 30, left_at=90 * S),  # never served: not measured
        ]
    )


def test_asterisk_average_is_three_quarters_old_plus_a_quarter_new_per_queue() -> None:
    trace = _estimate_case()
    queued = [r for r in trace.inquiries if r.served_at is not None]
    # answers of queue g in time order: b1 10 s at 10 s -> 2.5; b3 8 s at 18 s -> 3.875;
    # b2 25 s at 30 s -> 9.15625; b4 5 s at 45 s -> 8.1171875; b7 0 s at 60 s -> 6.087890625
    assert asterisk_estimates(queued) == [0.0, 0.0, 0.0, 9.15625, 0.0, 8.1171875, 6.087890625]


def test_estimate_errors_for_fenliu_and_both_baselines_on_a_hand_made_case() -> None:
    est = measure(_estimate_case())["estimates"]
    assert (est["queued_served"], est["zero_wait"], est["no_estimate"], est["measured"]) == (
        7,
        1,
        1,
        5,
    )
    # measured: b1, b2, b3, b4, b6. Fenliu: +0.2, -0.2, 0, +0.2, 0
    assert est["fenliu"]["mare"] == pytest.approx(0.6 / 5)
    assert est["fenliu"]["bias"] == pytest.approx(0.2 / 5)
    # Asterisk: 0 for b1, b2, b3, b6 (-1 each); b4: (9.15625 - 5) / 5 = +0.83125
    assert est["asterisk"]["mare"] == pytest.approx(4.83125 / 5)
    assert est["asterisk"]["bias"] == pytest.approx((-4 + 0.83125) / 5)
    # Rocket.Chat: no chat has ended, so the average duration is 0 and every estimate is 0
    assert est["rocketchat"] == {"mare": 1.0, "bias": -1.0, "mae_s": 10.0, "mare_long": None}
    assert est["best_baseline"] == "asterisk"
    assert est["ratio"] == pytest.approx(0.12 / 0.96625)
    # seconds off: Fenliu 2, 5, 0, 1, 0; Asterisk 10, 25, 8, 4.15625, 2
    assert est["fenliu"]["mae_s"] == pytest.approx(8 / 5)
    assert est["asterisk"]["mae_s"] == pytest.approx(49.15625 / 5)
    assert est["ratio_mae"] == pytest.approx(8 / 49.15625)
    # nobody waited 30 s or more
    assert (est["long_waits"], est["fenliu"]["mare_long"], est["ratio_long"]) == (0, None, None)


def test_long_wait_figures_are_not_decided_by_short_waits() -> None:
    """A buyer told 20 s who waited 10 s weighs 1.0 in MARE, nothing in the long-wait MARE."""
    trace = _trace(
        [
            _queued("b1", 0 * S, 40 * S, 50),  # real 40: Fenliu +10 s (+0.25), Asterisk 0 (-1)
            _queued("b2", 100 * S, 110 * S, 20),  # real 10: Fenliu +10 s (+1), Asterisk 10 exact
        ]
    )
    est = measure(trace)["estimates"]
    assert est["long_waits"] == 1
    assert est["fenliu"] == pytest.approx(
        {"mare": 0.625, "bias": 0.625, "mae_s": 10.0, "mare_long": 0.25}
    )
    assert est["asterisk"] == pytest.approx(
        {"mare": 0.5, "bias": -0.5, "mae_s": 20.0, "mare_long": 1.0}
    )
    assert est["rocketchat"] == {"mare": 1.0, "bias": -1.0, "mae_s": 25.0, "mare_long": 1.0}
    # better baseline by MARE and by seconds: Asterisk; on long waits both score 1.0
    assert est["best_baseline"] == "asterisk"
    assert est["ratio"] == pytest.approx(1.25)
    assert est["ratio_mae"] == pytest.approx(0.5)
    assert est["ratio_long"] == pytest.approx(0.25)
    head = measure(trace)["headline"]
    assert (head["fenliu_mae_s"], head["asterisk_mae_s"]) == (10.0, 20.0)


def _chat(name: str, group: str, served: int, seconds: float) -> InquiryRecord:
    end = served + int(seconds * S)
    return _inq(
        name, group, arrived=served, served_at=served, served_group=group, session_ended=end
    )


def _rocket_case() -> Trace:
    chats = [_chat("c0", "g", -600 * S, 600)]  # the oldest chat of g: beyond the last 100
    chats += [_chat(f"c{i}", "g", i * 100 * S, 60) for i in range(1, 101)]  # end by 10 060 s
    chats.append(_chat("h1", "h", 5000 * S, 999))  # another group's chat
    chats.append(_chat("late", "g", 19_000 * S, 11_000))  # ends after the buyers queue
    buyers = [
        _queued("q1", 20_000 * S, 20_100 * S, 100, queue_position=4),
        _queued("q2", 20_000 * S, 20_050 * S, 50, queue_position=3, queue_group=None),
    ]
    agents = [
        AgentRecord("a1", ["g"], 0.1, [(0, H)]),
        AgentRecord("a2", ["g"], 0.1, [(0, H)]),
        AgentRecord("a3", ["g"], 0.1, [(0, H)]),
        AgentRecord("a4", ["h"], 0.1, [(0, H)]),
    ]
    return _trace(chats + buyers, agents, {"a1": 2, "a2": 4, "a3": None, "a4": 10})


def test_rocketchat_estimate_uses_position_cap_and_last_100_chat_durations() -> None:
    trace = _rocket_case()
    q1, q2 = trace.inquiries[-2:]
    # q1 (queue g): last 100 chats of g ended before 20 000 s all lasted 60 s (c0's 600 s is
    # the 101st); cap = mean(2, 4) (a3 uncapped, a4 not in g); ((4 - 1) / 3 + 1) * 60 = 120
    # q2 (the pool): the shop's last 100 chats are c2..c100 (60 s) and h1 (999 s): 69.39 s;
    # cap = mean(2, 4, 10) = 16/3; ((3 - 1) / (16/3) + 1) * 69.39 = 95.41125
    assert rocketchat_estimates(trace, [q1, q2]) == pytest.approx([120.0, 95.41125])
    est = measure(trace)["estimates"]
    assert est["measured"] == 2
    assert est["rocketchat"]["bias"] == pytest.approx(
        ((120 - 100) / 100 + (95.41125 - 50) / 50) / 2
    )
    assert est["fenliu"] == {"mare": 0.0, "bias": 0.0, "mae_s": 0.0, "mare_long": 0.0}
    assert est["ratio"] == 0.0


def test_rocketchat_without_any_cap_counts_one_chat_per_agent() -> None:
    trace = _rocket_case()
    trace.caps = dict.fromkeys(trace.caps)
    q1 = trace.inquiries[-2]
    assert rocketchat_estimates(trace, [q1]) == pytest.approx([((4 - 1) / 1 + 1) * 60])


def test_estimate_points_are_real_and_three_estimates_in_seconds() -> None:
    points = estimate_points(_estimate_case())
    assert [p[0] for p in points] == [10.0, 25.0, 8.0, 5.0, 2.0]
    assert points[3] == (5.0, 6.0, 9.15625, 0.0)


# ----------------------------------------------------------------- conversion, leaving, waits


def test_conversion_and_abandonment_counts() -> None:
    by_a1 = {"arrived": 0, "served_at": S, "agent_id": "a1"}  # true conversion 0.2
    by_a2 = {"arrived": 0, "served_at": S, "agent_id": "a2"}  # 0.4
    mean = INTENT_MEAN  # an average buyer orders with the agent's true rate
    trace = _trace(
        [
            _inq("s1", "g", ordered=True, intent=mean, **by_a1),  # chance 0.2
            _inq("s2", "g", intent=2 * mean, **by_a1),  # 0.4
            _inq("s5", "g", served_group="g", intent=0.0, **by_a1),  # 0
            _inq("s3", None, served_group="h", ordered=True, intent=mean, **by_a2),  # 0.4
            _inq("s4", "g", served_group="h", intent=3 * mean, **by_a2),  # 1.2, capped: 1
            _inq("l1", left_at=S),
            _inq("l2", left_at=S),
            _inq("e1", expired_at=S),
            _inq("r1", None, rejected="no_group"),
            _inq("w1"),
        ],
        [AgentRecord("a1", ["g"], 0.2, [(0, H)]), AgentRecord("a2", ["h"], 0.4, [(0, H)])],
    )
    m = measure(trace)
    conv = m["conversion"]
    assert (conv["served"], conv["orders"], conv["rate"]) == (5, 2, 0.4)
    assert conv["expected_rate"] == pytest.approx(2.0 / 5)
    assert conv["by_group"]["g"] == pytest.approx(
        {"served": 3, "orders": 1, "rate": 1 / 3, "expected_rate": 0.6 / 3}
    )
    assert conv["by_group"]["h"] == pytest.approx(
        {"served": 2, "orders": 1, "rate": 0.5, "expected_rate": 1.4 / 2}
    )
    ab = m["abandonment"]
    assert (ab["accepted"], ab["left"], ab["expired"], ab["rejected"], ab["waiting"]) == (
        9,
        2,
        1,
        1,
        1,
    )
    assert ab["left_rate"] == pytest.approx(2 / 9)
    assert ab["expired_rate"] == pytest.approx(1 / 9)
    assert m["headline"]["abandonment"] == pytest.approx(2 / 9)


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile(list(range(1, 11)), 95) == 10
    assert percentile(list(range(20, 0, -1)), 95) == 19
    assert percentile([7.0], 95) == 7.0


def test_waits_run_from_arrival_to_service_in_seconds_per_group() -> None:
    rows = [_inq(f"g{i}", "g", arrived=H, served_at=H + i * S) for i in range(1, 21)]
    rows += [_inq("h1", "h", arrived=0, served_at=90 * S), _inq("left", left_at=999 * S)]
    waits = measure(_trace(rows))["waits"]
    assert (waits["served"], waits["p50_s"], waits["p95_s"], waits["max_s"]) == (21, 11, 20, 90)
    g = waits["by_group"]["g"]
    assert (g["p50_s"], g["p95_s"], g["max_s"]) == (10, 19, 20)
    assert waits["by_group"]["h"]["p95_s"] == 90


# ----------------------------------------------------------------- fairness


def test_jain_and_gini_for_equal_and_unequal_loads() -> None:
    assert (jain([2.0, 2.0, 2.0]), gini([2.0, 2.0, 2.0]), max_min_share([2.0, 2.0])) == (1, 0, 1)
    assert jain([1.0, 3.0]) == pytest.approx(0.8)
    assert gini([3.0, 1.0]) == pytest.approx(0.25)
    assert max_min_share([1.0, 3.0]) == 3.0
    assert jain([0.0, 0.0, 0.0, 4.0]) == pytest.approx(0.25)
    assert gini([0.0, 0.0, 0.0, 4.0]) == pytest.approx(0.75)
    assert max_min_share([0.0, 4.0]) is None
    assert (jain([]), gini([]), max_min_share([])) == (None, None, None)
    assert (jain([0.0, 0.0]), gini([0.0, 0.0])) == (1.0, 0.0)


def _assigned(agent: str, group: str, n: int) -> list[InquiryRecord]:
    return [
        _inq(f"{agent}-{group}-{i}", group, served_at=S, agent_id=agent, served_group=group)
        for i in range(n)
    ]


def test_fairness_is_normalised_by_online_time() -> None:
    agents = [
        AgentRecord("a1", ["g"], 0.1, [(0, 2 * H)]),  # 2 h
        AgentRecord("a2", ["g", "h"], 0.1, [(0, H // 2), (H, H + H // 2)]),  # 1 h in two halves
        AgentRecord("a3", ["g"], 0.1, []),  # never online
    ]
    rows = _assigned("a1", "g", 4) + _assigned("a2", "g", 2) + _assigned("a2", "h", 3)
    rows += _assigned("a3", "g", 1)
    fair = measure(_trace(rows, agents))["fairness"]
    g = fair["by_group"]["g"]  # a2 online half as long with half the buyers: fair
    assert g["per_hour"] == {"a1": 2.0, "a2": 2.0}
    assert (g["jain"], g["gini"], g["max_min_share"]) == (1.0, 0.0, 1.0)
    assert (g["agents"], g["assignments"], g["unmeasured"]) == (2, 6, 1)
    overall = fair["overall"]  # rates 2 and 5 per hour
    assert overall["jain"] == pytest.approx(49 / 58)
    assert overall["gini"] == pytest.approx(3 / 14)
    assert overall["max_min_share"] == pytest.approx(2.5)
    assert (overall["assignments"], overall["unmeasured"]) == (9, 1)
    h = fair["by_group"]["h"]
    assert (h["agents"], h["per_hour"], h["jain"]) == (1, {"a2": 3.0}, 1.0)


# ----------------------------------------------------------------- the whole


def test_measure_is_plain_json_deterministic_and_has_the_headline_the_report_reads() -> None:
    trace = _rocket_case()
    first = measure(trace)
    text = json.dumps(first, allow_nan=False, sort_keys=True)
    assert json.dumps(measure(trace), allow_nan=False, sort_keys=True) == text
    assert set(first["headline"]) == {
        "conversion",
        "expected_conversion",
        "orders",
        "wait_p50_s",
        "wait_p95_s",
        "wait_max_s",
        "abandonment",
        "reply_share_within",
        "reply_p95_s",
        "first_reply_share_within",
        "first_reply_p95_s",
        "reassigned",
        "jain",
        "gini",
        "max_min_share",
        "fenliu_mare",
        "asterisk_mare",
        "rocketchat_mare",
        "fenliu_mae_s",
        "asterisk_mae_s",
        "rocketchat_mae_s",
        "oracle_share",
    }
    assert first["headline"]["oracle_share"] is None  # add_oracle_shares compares runs
    assert first["headline"]["fenliu_mare"] == first["estimates"]["fenliu"]["mare"]


def test_an_empty_trace_has_no_figures_rather_than_errors() -> None:
    m = measure(_trace([]))
    head = m["headline"]
    assert head["conversion"] is None and head["wait_p95_s"] is None
    assert head["abandonment"] is None and head["jain"] is None
    assert m["estimates"]["best_baseline"] is None and m["estimates"]["ratio"] is None
