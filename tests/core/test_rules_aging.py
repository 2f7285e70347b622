"""contract §3.1 `queue.priority_aging`: a waiting buyer's priority for its order in line grows
by 1 per `priority_aging` waited; events and the API keep the priority it came with."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from daemon.core.engine import Engine
from daemon.core.plan import apply, dry_run
from daemon.core.view import shop_view
from tests.scenario import SHOP, Scenario, group, shop
from topics.events import QueueStatus


def _q(**kw: Any) -> dict[str, Any]:
    return {"enabled": True, "default_cap": 1, **kw}


def _line(sc: Scenario, group_name: str = "g") -> list[tuple[str, int, int]]:
    """(buyer, position, priority) of a line, as the API shows it."""
    view = shop_view(sc.engine.shop(SHOP), sc.now)
    (line,) = [q["buyers"] for q in view["queues"] if q["group"] == group_name]
    return [(b["buyer_id"], b["position"], b["priority"]) for b in line]


def _served(sc: Scenario, n: int) -> list[str]:
    """The next `n` buyers a1 serves, one session timeout (10m) after another."""
    served = []
    for _ in range(n):
        sc.after("10m")
        served.append(sc.assignments()[-1].buyer_id)
    return served


def test_a_low_priority_buyer_who_waited_long_enough_overtakes_a_later_high_priority_one() -> None:
    sc = Scenario(shop(["a1"], queue=_q(priority_aging="2m")))
    sc.at("0s").online("a1")
    sc.inquiry("busy")
    sc.at("1s").inquiry("low")
    sc.at("5m").inquiry("vip", priority=2)  # low has waited ~5m: 0 + 2.5 > 2
    sc.at("5m1s").inquiry("rush", priority=3)  # 3 > 2.5: ahead of low
    assert [(u.buyer_id, u.position) for u in sc.updates() if u.status is QueueStatus.QUEUED] == [
        ("low", 1),
        ("vip", 2),
        ("rush", 1),
    ]
    assert _line(sc) == [("rush", 1, 3), ("low", 2, 0), ("vip", 3, 2)]  # as they came
    assert _served(sc, 3) == ["rush", "low", "vip"]


@pytest.mark.parametrize(
    ("priority", "after", "expected"),
    [
        (3, "6m", ["old", "new"]),  # 0 + 6m / 2m = 3: equal, the earlier arrival first
        (3, "6m1s", ["old", "new"]),  # old is a little above 3 by then
        (4, "6m", ["new", "old"]),  # 4 > 3
        (3, "5m59s", ["new", "old"]),  # old not quite 3 yet
    ],
)
def test_the_worked_example_of_the_docs(priority: int, after: str, expected: list[str]) -> None:
    """docs/routing.md, Queues: with 2m a priority-0 buyer who waited 6 minutes ranks with a
    priority-3 buyer who just arrived."""
    sc = Scenario(shop(["a1"], queue=_q(priority_aging="2m")))
    sc.at("0s").online("a1")
    sc.inquiry("busy")
    sc.inquiry("old")
    sc.at(after).inquiry("new", priority=priority)
    assert [b for b, _, _ in _line(sc)] == expected
    assert _served(sc, 2) == expected


def _long_day(queue: dict[str, Any]) -> Scenario:
    """Buyers of every priority over an hour, with waits far longer than any aging."""
    sc = Scenario(shop(["a1"], queue=queue))
    sc.at("0s").online("a1")
    sc.inquiry("busy")
    for n in range(12):
        sc.at(f"{5 * n}m").inquiry(f"b{n}", priority=n % 3)
    sc.after("3h")
    return sc


def test_aging_0_orders_exactly_by_priority_then_arrival_as_without_the_setting() -> None:
    without, off = _long_day(_q()), _long_day(_q(priority_aging=0))
    assert off.outputs == without.outputs
    assert off.config.version == without.config.version  # 0 is the default: same settings
    dequeued = [a.buyer_id for a in without.assignments() if a.reason.value == "dequeued"]
    # one served every 10m from those who came before: highest priority, then earliest
    assert dequeued == ["b1", "b2", "b5", "b4", "b8", "b11", "b7", "b10", "b0", "b3", "b6", "b9"]
    aged = _long_day(_q(priority_aging="5m"))
    assert aged.config.version != without.config.version
    served = [a.buyer_id for a in aged.assignments() if a.reason.value == "dequeued"]
    assert served != dequeued and sorted(served) == sorted(dequeued)


def test_a_reload_that_changes_aging_reorders_the_line_and_tells_the_moved_buyers() -> None:
    sc = Scenario(shop(["a1"], queue=_q()))
    sc.at("0s").online("a1")
    sc.inquiry("busy")
    sc.inquiry("low")
    sc.at("5m").inquiry("vip", priority=1)
    sc.at("6m").inquiry("late")
    assert [b for b, _, _ in _line(sc)] == ["vip", "low", "late"]
    before = len(sc.outputs)
    reloaded = shop(["a1"], queue=_q(priority_aging="1m"))
    sc.after("1s").reload(reloaded)  # low: 0 + 6; vip: 1 + 1; late: 0 + 0
    assert [b for b, _, _ in _line(sc)] == ["low", "vip", "late"]
    sc.after(sc.config.queue.update_interval)
    told = [(u.buyer_id, u.status.value, u.position) for u in sc.outputs[before:]]
    assert told == [("low", "waiting", 1), ("vip", "waiting", 2)]  # late kept its place
    assert {u.config for u in sc.updates()[-2:]} == {reloaded.version}
    assert _served(sc, 3) == ["low", "vip", "late"]


def test_the_reload_plan_names_the_setting_and_moves_nobody_to_another_line() -> None:
    sc = Scenario(shop(["a1"], queue=_q()))
    engine = sc.engine
    sc.at("0s").online("a1")
    sc.inquiry("busy")
    sc.inquiry("low")
    sc.at("5m").inquiry("vip", priority=1)
    reloaded = shop(["a1"], queue=_q(priority_aging="1m"))
    (planned,) = dry_run(engine, {SHOP: reloaded}, sc.now)
    assert planned.changes == ("queue.priority_aging: 0 -> 60000",)
    assert planned.effects == {
        "assigned": 0, "queued": 0, "moved": 0, "expired": 0, "above_cap": 0,
    }  # fmt: skip
    _, applied = apply(engine, {SHOP: reloaded}, sc.now)
    assert applied == [planned]


def test_a_restored_shop_keeps_the_aged_order() -> None:
    config = shop(["a1"], queue=_q(priority_aging="1m"))
    sc = Scenario(config)
    sc.at("0s").online("a1")
    sc.inquiry("busy")
    sc.inquiry("low")
    sc.at("3m").inquiry("vip", priority=2)  # 2 < 3: behind low
    sc.at("3m30s").inquiry("rush", priority=5)  # 5 > 3.5: ahead of low
    order = _line(sc)
    assert [b for b, _, _ in order] == ["rush", "low", "vip"]
    now = sc.engine.now
    snapshot = orjson.loads(orjson.dumps(sc.engine.snapshot()))  # as the store gives it back
    sc.engine = Engine.restore({SHOP: config}, snapshot)
    sc.engine.now = now
    assert _line(sc) == order
    assert _served(sc, 3) == ["rush", "low", "vip"]


def test_overflow_keeps_the_arrival_so_the_wait_counts_from_it() -> None:
    """contract §3.1: a buyer moved by max_wait keeps its arrival, and so its aging."""
    config = shop(
        ["a1", "a2"],
        groups=[
            group(
                "first",
                ["a1"],
                match={"intents": ["x"]},
                accept_unmatched=False,
                overflow_to="second",
            ),
            group("second", ["a2"]),
        ],
        queue=_q(priority_aging="1m", max_wait="4m"),
    )
    sc = Scenario(config)
    sc.at("0s").online("a1", "a2")
    sc.inquiry("busy1", intent="x")
    sc.inquiry("busy2")
    sc.inquiry("moved", intent="x")
    sc.at("3m").inquiry("vip", priority=2)  # in second: 2 + 0 at 3m, moved is 0 + 3 by then
    sc.at("4m")  # moved overflows into second: 0 + 4 against vip's 2 + 1
    assert [u.status.value for u in sc.updates("moved")] == ["queued", "queued"]
    assert [b for b, _, _ in _line(sc, "second")] == ["moved", "vip"]
