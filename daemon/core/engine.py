"""The routing engine: every configured shop's state machine behind one sans-I/O API.

    engine = Engine(shops)                 # {shop_id: ShopConfig}
    outputs = engine.handle(event, now)    # fires due timers, applies one event
    outputs = engine.on_timer(now)         # fires due timers only
    engine.next_deadline()                 # when on_timer next has work, or None
    for shop_id in engine.due(now):        # the same as on_timer, one shop at a time
        outputs = engine.fire(shop_id, now)

`now` is epoch milliseconds supplied by the caller (the daemon's clock, or virtual time in
the simulator and tests); the engine never reads a clock and never does I/O. Time never runs
backwards: an earlier `now` is treated as the latest one the engine has seen, in any call and
for any shop (a late event cannot time a session out earlier than a timer call already saw).

Bad input raises `EventRejected` (a sentence for the dead-letter topic) and changes
nothing; outputs of timers that fired first ride on the exception as `.outputs`.
Shops are snapshot and restored one at a time (`snapshot_shop`, `restore_shop`), because a
Kafka partition — the unit a daemon instance owns — carries whole shops. An engine created
with `track=True` also remembers what changed, and `take_deltas()` hands the changes since
the previous call to whoever checkpoints them.

The cost of an event does not grow with the number of shops (contract §7): the engine keeps
each shop's next deadline in one heap and the shops touched since the last look in a set,
so `next_deadline`, `due` and `take_deltas` visit only the shops that changed or are due.

`oracle` ({shop id: {agent id: true conversion rate}}) is for the policy lab alone
(`fenliu simulate --mode oracle`, daemon/lab/policy.py): conversion mode then ranks by those
rates (`daemon.core.candidate`). The daemon never passes it; no configuration or event
reaches it, and it is not checkpointed.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import Any

from daemon.core.config import ShopConfig
from daemon.core.errors import EventRejected
from daemon.core.shop import ShopEngine
from daemon.core.snapshot import ShopDelta, dump_shop, load_shop, take_delta
from topics.events import InputEvent, OutputEvent

__all__ = ["Engine", "EventRejected", "ShopDelta"]

DEFAULT_DEDUP_CAPACITY = 100_000


class Engine:
    """Routing for a set of shops. See the module docstring."""

    def __init__(
        self,
        shops: Mapping[str, ShopConfig],
        *,
        dedup_capacity: int = DEFAULT_DEDUP_CAPACITY,
        track: bool = False,
        oracle: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        self.dedup_capacity = dedup_capacity
        self.track = track
        self.oracle = oracle
        self.configs: dict[str, ShopConfig] = dict(shops)
        self.shops: dict[str, ShopEngine] = {
            shop_id: self._new_shop(config) for shop_id, config in self.configs.items()
        }
        self._deadlines: list[tuple[int, str]] = []  # (deadline, shop), stale ones skipped
        self._armed: dict[str, int] = {}  # shop -> its deadline in the heap
        self._touched: set[str] = set(self.shops)  # shops whose deadline may have moved
        # shops that events, timers or a reload changed since the last take_deltas; a new
        # or reset shop is not among them until something happens to it (its first delta
        # then carries its initial rows), so thousands of idle shops cost no writes
        self._unsaved: set[str] = set()
        self._pristine: set[str] = set(self.shops)  # as created: resetting them is a no-op
        self.now = 0  # the latest `now` any call has passed

    def _new_shop(self, config: ShopConfig) -> ShopEngine:
        rates = self.oracle.get(config.id) if self.oracle is not None else None
        return ShopEngine(
            config, dedup_capacity=self.dedup_capacity, track=self.track, oracle=rates
        )

    def shop(self, shop_id: str) -> ShopEngine:
        """The state machine of one shop (KeyError if not configured)."""
        return self.shops[shop_id]

    def handle(self, event: InputEvent, now: int) -> list[OutputEvent]:
        """Apply one decoded input event at time `now`; return the decisions."""
        shop_id = event.shop_id
        shop = self.shops.get(shop_id)
        if shop is None:
            raise EventRejected(f"shop_id {shop_id!r} is not configured")
        self._touch(shop_id)
        if now < self.now:
            now = self.now
        else:
            self.now = now
        return shop.handle(event, now)

    def _touch(self, shop_id: str) -> None:
        self._touched.add(shop_id)
        self._unsaved.add(shop_id)
        self._pristine.discard(shop_id)

    def _rearm(self) -> None:
        """Bring the deadline heap up to date with the shops touched since the last look."""
        armed, heap = self._armed, self._deadlines
        for shop_id in self._touched:
            shop = self.shops.get(shop_id)
            deadline = shop.next_deadline() if shop is not None else None
            if deadline is None:
                armed.pop(shop_id, None)
            elif armed.get(shop_id) != deadline:
                armed[shop_id] = deadline
                heapq.heappush(heap, (deadline, shop_id))
        self._touched.clear()
        while heap and armed.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # superseded by a later push, or the shop has none now

    def due(self, now: int) -> list[str]:
        """The shops with a timer due at or before `now` (fire each with `fire`)."""
        self._rearm()
        now = self.now = max(self.now, now)
        heap, armed, found = self._deadlines, self._armed, []
        while heap and heap[0][0] <= now:
            deadline, shop_id = heapq.heappop(heap)
            if armed.get(shop_id) == deadline:
                del armed[shop_id]
                self._touched.add(shop_id)  # re-armed after it fires
                found.append(shop_id)
        return found

    def fire(self, shop_id: str, now: int) -> list[OutputEvent]:
        """Fire one shop's timers due at or before `now`."""
        self._touch(shop_id)
        self.now = max(self.now, now)
        return self.shops[shop_id].on_timer(self.now)

    def on_timer(self, now: int) -> list[OutputEvent]:
        """Fire every timer due at or before `now`, shop by shop."""
        out: list[OutputEvent] = []
        for shop_id in self.due(now):
            out.extend(self.fire(shop_id, now))
        return out

    def next_deadline(self) -> int | None:
        """The earliest time any shop has a timer due, or None."""
        self._rearm()
        return self._deadlines[0][0] if self._deadlines else None

    def reconfigure(self, shops: Mapping[str, ShopConfig], now: int) -> list[OutputEvent]:
        """Apply reloaded configuration: new shops start empty, removed shops are dropped."""
        self.now = max(self.now, now)
        out: list[OutputEvent] = []
        for shop_id in list(self.shops):
            if shop_id not in shops:
                del self.shops[shop_id]
                self._armed.pop(shop_id, None)
                self._unsaved.discard(shop_id)
                self._pristine.discard(shop_id)
        for shop_id, config in shops.items():
            if self.configs.get(shop_id) == config:
                continue  # an unchanged shop file changes nothing (thousands are common)
            self._touched.add(shop_id)
            if shop_id in self.shops:
                self._unsaved.add(shop_id)
                self._pristine.discard(shop_id)
                out.extend(self.shops[shop_id].reconfigure(config, self.now))
            else:
                self.shops[shop_id] = self._new_shop(config)
                self._pristine.add(shop_id)
        self.configs = dict(shops)
        return out

    def snapshot_shop(self, shop_id: str) -> dict[str, Any]:
        """One shop's state as plain JSON-able data."""
        return dump_shop(self.shops[shop_id])

    def restore_shop(self, shop_id: str, data: dict[str, Any]) -> None:
        """Replace one shop's state with a snapshot taken by `snapshot_shop`."""
        rates = self.oracle.get(shop_id) if self.oracle is not None else None
        self.shops[shop_id] = load_shop(
            self.configs[shop_id],
            data,
            dedup_capacity=self.dedup_capacity,
            track=self.track,
            oracle=rates,
        )
        self._touched.add(shop_id)
        self._pristine.discard(shop_id)

    def reset_shop(self, shop_id: str) -> None:
        """Forget one shop's state (it starts empty), e.g. when its partition is revoked."""
        if shop_id in self._pristine:
            return  # nothing happened to it since it was created (thousands of idle shops)
        self.shops[shop_id] = self._new_shop(self.configs[shop_id])
        self._touched.add(shop_id)
        self._pristine.add(shop_id)

    def take_deltas(self) -> dict[str, ShopDelta]:
        """Per shop that changed since the previous call, what changed (`track=True` only)."""
        deltas = {}
        for shop_id in self._unsaved:
            shop = self.shops.get(shop_id)
            delta = take_delta(shop) if shop is not None else None
            if delta is not None:
                deltas[shop_id] = delta
        self._unsaved.clear()
        return deltas

    def snapshot(self) -> dict[str, Any]:
        """Every shop's state."""
        return {shop_id: self.snapshot_shop(shop_id) for shop_id in self.shops}

    @classmethod
    def restore(
        cls,
        shops: Mapping[str, ShopConfig],
        data: Mapping[str, dict[str, Any]],
        *,
        dedup_capacity: int = DEFAULT_DEDUP_CAPACITY,
    ) -> Engine:
        """An engine whose shops are in the states `snapshot` recorded."""
        engine = cls(shops, dedup_capacity=dedup_capacity)
        for shop_id, shop_data in data.items():
            if shop_id in engine.shops:
                engine.restore_shop(shop_id, shop_data)
        return engine
