"""A reload's plan (daemon/core/plan.py, contract §5): the dry run changes nothing and says
exactly what applying the same files then reports and does."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings

from daemon.core.engine import Engine
from daemon.core.plan import apply, changes, dry_run
from daemon.core.view import shop_view
from tests.engine_model import Driver
from tests.scenario import SHOP, group, shop
from tests.strategies import Case, cases
from topics.events import (
    AgentStatus,
    AgentStatusChanged,
    Assignment,
    BuyerInquired,
    InquiryContext,
    QueueStatus,
    QueueUpdate,
)

T0 = 1_700_000_000_000


def _state(engine: Engine) -> bytes:
    return orjson.dumps(engine.snapshot(), option=orjson.OPT_SORT_KEYS)


def _queued_shop(cap: int) -> Engine:
    config = shop(["a1", "a2"], queue={"enabled": True, "default_cap": cap})
    engine = Engine({SHOP: config})
    engine.handle(AgentStatusChanged("s1", SHOP, T0, "a1", AgentStatus.ONLINE), T0)
    for n in range(4):
        engine.handle(BuyerInquired(f"i{n}", SHOP, T0, f"b{n}", InquiryContext(), 0), T0)
    return engine


def test_a_raised_cap_is_planned_as_buyers_served_and_applied_as_planned() -> None:
    engine = _queued_shop(cap=1)  # b0 with a1, three in line
    raised = shop(["a1", "a2"], queue={"enabled": True, "default_cap": 3})
    before = _state(engine)
    (plan,) = dry_run(engine, {SHOP: raised}, T0 + 1)
    assert _state(engine) == before  # nothing applied
    assert plan.as_json() == {
        "shop": SHOP,
        "change": "modified",
        "changes": ["queue.default_cap: 1 -> 3"],
        "effects": {"assigned": 2, "queued": 0, "moved": 0, "expired": 0, "above_cap": 0},
    }
    outputs, applied = apply(engine, {SHOP: raised}, T0 + 1)
    assert applied == [plan]
    served = [o for o in outputs if isinstance(o, Assignment)]
    assert [(o.buyer_id, o.reason.value) for o in served] == [
        ("b1", "dequeued"),
        ("b2", "dequeued"),
    ]
    assert all(isinstance(o, Assignment | QueueUpdate) for o in outputs)
    assert QueueStatus.EXPIRED not in {getattr(o, "status", None) for o in outputs}


def test_a_lowered_cap_leaves_sessions_above_it_and_says_how_many() -> None:
    engine = _queued_shop(cap=4)  # a1 takes all four
    (plan,) = dry_run(
        engine, {SHOP: shop(["a1", "a2"], queue={"enabled": True, "default_cap": 1})}, T0
    )
    assert plan.effects["above_cap"] == 3 and plan.effects["assigned"] == 0


def test_shops_added_and_removed_come_from_the_files_and_unchanged_ones_are_not_listed() -> None:
    engine = Engine({"s1": shop(["a1"]).model_copy(update={"id": "s1"}),
                     "s2": shop(["a1"]).model_copy(update={"id": "s2"})})  # fmt: skip
    files = {"s2": engine.configs["s2"], "s3": shop(["x", "y"]).model_copy(update={"id": "s3"})}
    plans = dry_run(engine, files, T0)
    assert [(p.shop, p.change) for p in plans] == [("s1", "removed"), ("s3", "added")]
    assert plans[1].changes == ("2 agents, groups g, mode efficiency",)


def test_changes_name_agents_and_groups_by_id() -> None:
    old = shop(["a1", "a2"], groups=[group("g", ["a1", "a2"]), group("h", ["a2"])])
    new = shop(
        [{"id": "a1", "cap": 3}, "a9"],
        groups=[group("g", ["a1", "a9"], mode="conversion")],
        mode="average",
    )
    assert changes(old, new) == (
        "agent a1 cap: null -> 3",
        "agent a2 removed",
        "agent a9 added",
        "group g agents: +a9 -a2",
        "group g mode: null -> conversion",
        "group h removed",
        "mode: efficiency -> average",
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), cases())
def test_the_dry_run_changes_nothing_and_the_reload_then_does_what_it_said(
    case: Case, other: Case
) -> None:
    """Any shop's live state after random steps, reloaded with another random shop file."""
    driver = Driver(case.config)
    for step in case.steps:
        driver.run(step)
    engine, now = driver.engine, driver.now + 1
    before, lines = _state(engine), _lines(engine)
    planned = dry_run(engine, {SHOP: other.config}, now)
    assert _state(engine) == before
    outputs, applied = apply(engine, {SHOP: other.config}, now)
    assert applied == planned
    if not planned:
        assert case.config == other.config and outputs == []
        return
    statuses = [o.status for o in outputs if isinstance(o, QueueUpdate)]
    view = shop_view(engine.shops[SHOP], now)
    after = _lines(engine)
    assert planned[0].effects == {  # counted here from the outputs and the API's view
        "assigned": sum(isinstance(o, Assignment) for o in outputs),
        "queued": statuses.count(QueueStatus.QUEUED),
        "moved": sum(1 for b, line in after.items() if b in lines and lines[b] != line),
        "expired": statuses.count(QueueStatus.EXPIRED),
        "above_cap": sum(
            max(0, a["open_sessions"] - a["cap"]) for a in view["agents"] if a["cap"] is not None
        ),
    }


def _lines(engine: Engine) -> dict[str, object]:
    """Each queued buyer's line, as the API shows it."""
    view = shop_view(engine.shops[SHOP], engine.now)
    return {b["buyer_id"]: q["group"] for q in view["queues"] for b in q["buyers"]}
