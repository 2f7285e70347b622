"""The patience a candidate learns from queue exits (daemon/core/patience.py) and how the
wait estimate reads it: buyers ahead who usually would have given up by now stay."""

from __future__ import annotations

from typing import Any

from daemon.core.estimate import EXACT_AHEAD, stayers, stays_ahead
from daemon.core.patience import BINS, Survival, new_patience, observe
from daemon.core.snapshot import dump_shop, load_shop
from tests.scenario import SHOP, Scenario, shop


def _q(**kw: Any) -> dict[str, Any]:
    return {"enabled": True, "default_cap": 1, **kw}


def test_nothing_learned_means_everyone_stays() -> None:
    survival = Survival(new_patience())
    assert not survival.known and survival.stays(0.0, 600.0) == 1.0


def test_leaves_teach_the_hazard_by_time_in_line_and_served_buyers_only_exposure() -> None:
    patience = new_patience()
    for _ in range(50):
        observe(patience, 25_000, left=True)  # give up after 25 s
        observe(patience, 200_000, left=False)  # served after 200 s: at risk, never left
    survival = Survival(patience)
    assert survival.known
    early = survival.stays(0.0, 40.0)  # passes through the 15-30 s bin where buyers leave
    late = survival.stays(60.0, 120.0)  # past it: nobody ever left there
    assert early < 0.7 and late == 1.0
    assert len(patience) == 2 * BINS


def _taught(leavers: int) -> Scenario:
    """a1 owes s1 a reply (its slot frees 2 min after now at the earliest), and `leavers`
    buyers have each given up after 25 s in line."""
    sc = Scenario(shop(["a1"], queue=_q(avg_handle_time="5m", session_timeout="2m")))
    sc.at("0s").online("a1")
    sc.inquiry("s1")
    sc.says("s1")  # the session stays open until a1 replies
    for n in range(leavers):
        sc.after("5s").inquiry(f"gone{n}")
        sc.after("25s").leave(f"gone{n}")
    return sc


def _estimate_behind_two(joined_before_s: int) -> int:
    """a1 owes s1 a reply (its slot frees 2 min after now at the earliest); 30 buyers have
    each given up after 25 s in line; two buyers join `joined_before_s` before x, who is
    third in line: its first estimate."""
    sc = _taught(30)
    sc.after("1m")
    sc.inquiry("y1")
    sc.inquiry("y2")
    sc.after(f"{joined_before_s}s")
    sc.inquiry("x")
    first = sc.updates("x")[0]
    assert first.position == 3
    assert first.estimated_wait_s is not None
    return first.estimated_wait_s


def test_buyers_ahead_past_the_usual_patience_are_expected_to_stay() -> None:
    """Just joined, the two ahead will likely give up (as everyone did after 25 s; each
    stays with e^-1.5 ≈ 0.22): x is served at the first slot. Having already waited 5
    minutes, past where anyone left, both stay: x waits two handle times more. (A share
    of leavers alone told both lines the same.)"""
    fresh, seasoned = _estimate_behind_two(0), _estimate_behind_two(300)
    assert fresh == 120  # the slot a1 frees 2 min after replying, at the earliest
    assert seasoned == 120 + 2 * 300


def test_patience_survives_a_snapshot_and_the_restored_shop_estimates_the_same() -> None:
    sc = _taught(10)
    cfg = sc.engine.configs[SHOP]
    sc.inquiry("y1")
    sc.inquiry("y2")
    original = sc.engine.shop(SHOP)
    data = dump_shop(original)
    learned = data["candidates"]["g"]["patience"]
    assert learned == original.routing.candidate("g").stats.patience and any(learned[:BINS])
    restored = load_shop(cfg, data, dedup_capacity=1000)
    back = restored.routing.candidate("g")
    assert back is not None and back.stats.patience == learned
    later = original.now + 20_000  # the next tick announces the line's waits again
    assert restored.on_timer(later) == original.on_timer(later)
    assert dump_shop(restored) == dump_shop(original)


def test_a_joining_buyer_asks_only_the_first_buyers_ahead_the_rest_count_at_the_flat_share() -> (
    None
):
    """Joining a long line costs the same as a short one: `stays_ahead` with a limit reads
    EXACT_AHEAD buyers; `stayers` counts the ones behind those at the flat share `stay`."""
    sc = _taught(30)
    for n in range(EXACT_AHEAD + 20):
        sc.after("1s").inquiry(f"w{n}")
    engine = sc.engine.shop(SHOP)
    cand = engine.routing.candidate("g")
    assert cand is not None and len(cand.line.items) == EXACT_AHEAD + 20
    buyers, now = engine.state.buyers, engine.state.now
    full = stays_ahead(cand, buyers, now)
    some = stays_ahead(cand, buyers, now, EXACT_AHEAD)
    assert len(full) == EXACT_AHEAD + 21 and some == full[: EXACT_AHEAD + 1]
    n = EXACT_AHEAD + 20
    stay = cand.stats.stay
    assert stayers(some, n, stay) == some[-1] + 20 * stay
    assert stayers(full, n, stay) == full[-1] != stayers(some, n, stay)
    assert stayers([], n, stay) == n * stay  # nobody left yet: the flat share


def _estimate_in_hindsight(leaving: tuple[str, ...]) -> int:
    """As `_estimate_behind_two(0)`, with the policy lab's hindsight (`Queues.leavers`)
    naming which of the two ahead will leave."""
    sc = _taught(30)
    sc.after("1m")
    ids = {buyer: sc.inquiry(buyer) for buyer in ("y1", "y2")}
    sc.engine.shop(SHOP).queues.leavers = frozenset(ids[b] for b in leaving)
    sc.inquiry("x")
    first = sc.updates("x")[0]
    assert first.position == 3 and first.estimated_wait_s is not None
    return first.estimated_wait_s


def test_hindsight_counts_exactly_the_buyers_ahead_who_will_stay() -> None:
    """The lab's gauge: told who will leave, the estimate ignores the learned patience (which
    expects both fresh buyers ahead to go, `_estimate_behind_two(0)` = 120 s) and counts
    the stayers: none leaving, x waits for the first slot and two handle times more; one,
    one more; both, the first slot."""
    assert _estimate_behind_two(0) == 120
    assert _estimate_in_hindsight(()) == 120 + 2 * 300
    assert _estimate_in_hindsight(("y1",)) == 120 + 300
    assert _estimate_in_hindsight(("y2",)) == 120 + 300
    assert _estimate_in_hindsight(("y1", "y2")) == 120
