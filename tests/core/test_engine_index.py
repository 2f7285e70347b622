"""The engine's cross-shop indexes (deadline heap, touched shops) always equal a recomputation
over every shop: `next_deadline`, `due` and `take_deltas` visit only the shops that changed,
and must still see every one (contract §7: an event's cost does not grow with the shops).
A new or reset shop is written with its first change, not before."""

from __future__ import annotations

import contextlib
import random
import tomllib

import pytest

from daemon.core.config import ShopConfig
from daemon.core.engine import Engine, EventRejected
from topics.events import AgentStatus, AgentStatusChanged, BuyerInquired, InputEvent, MessageSent

SHOPS = {
    shop: ShopConfig.model_validate(
        tomllib.loads(
            f'id = "{shop}"\n[queue]\nenabled = true\ndefault_cap = 1\nsession_timeout = "{t}s"\n'
            'max_wait = "20s"\nupdate_interval = "2s"\n'
            '[[agents]]\nid = "a1"\n[[agents]]\nid = "a2"\n'
            '[[groups]]\nname = "g"\nagents = ["a1", "a2"]\n'
        )
    )
    for shop, t in (("s1", 5), ("s2", 7), ("s3", 11), ("s4", 13))
}


def _event(rng: random.Random, n: int, now: int) -> InputEvent:
    shop, buyer = rng.choice(sorted(SHOPS)), f"b{rng.randrange(6)}"
    kind = rng.random()
    if kind < 0.4:
        return BuyerInquired(f"e{n}", shop, now, buyer)
    if kind < 0.7:
        sender = rng.choice(("buyer", "agent"))
        agent = rng.choice(("a1", "a2")) if sender == "agent" else None
        return MessageSent(f"e{n}", shop, now, buyer, sender, agent)  # type: ignore[arg-type]
    status = rng.choice(list(AgentStatus))
    return AgentStatusChanged(f"e{n}", shop, now, rng.choice(("a1", "a2")), status)


def _reference_deadline(engine: Engine) -> int | None:
    deadlines = [d for s in engine.shops.values() if (d := s.next_deadline()) is not None]
    return min(deadlines, default=None)


@pytest.mark.parametrize("seed", range(12))
def test_indexes_equal_a_scan_of_every_shop(seed: int) -> None:
    rng = random.Random(seed)
    engine = Engine(SHOPS, track=True)
    now = 1_000_000
    acted_on: set[str] = set()  # shops events or timers reached since the last deltas
    for n in range(400):
        now += rng.choice((0, 100, 900, 3000))
        step = rng.random()
        if step < 0.7:
            event = _event(rng, n, now)
            acted_on.add(event.shop_id)
            with contextlib.suppress(EventRejected):
                engine.handle(event, now)
        elif step < 0.85:
            expected = {
                shop_id
                for shop_id, shop in engine.shops.items()
                if (d := shop.next_deadline()) is not None and d <= now
            }
            due = engine.due(now)
            assert set(due) == expected and len(due) == len(expected)
            for shop_id in due:
                engine.fire(shop_id, now)
            acted_on.update(due)
        elif step < 0.9:
            engine.reset_shop(rng.choice(sorted(SHOPS)))
        elif step < 0.95:
            shop_id = rng.choice(sorted(SHOPS))
            engine.restore_shop(shop_id, engine.snapshot_shop(shop_id))
        else:
            changed = {s for s in acted_on if engine.shops[s].changes}
            assert set(engine.take_deltas()) == changed
            acted_on.clear()
        assert engine.next_deadline() == _reference_deadline(engine)


def test_a_removed_shop_leaves_the_deadline_heap() -> None:
    engine = Engine(SHOPS, track=True)
    engine.handle(AgentStatusChanged("e1", "s1", 1000, "a1", AgentStatus.ONLINE), 1000)
    engine.handle(BuyerInquired("e2", "s1", 1000, "b1"), 1000)
    assert engine.next_deadline() is not None
    engine.reconfigure({k: v for k, v in SHOPS.items() if k != "s1"}, 1000)
    assert engine.next_deadline() is None
    assert engine.due(10**12) == [] and "s1" not in engine.take_deltas()
