"""What the JSON API reads: snapshot views built by the loop, and each shop's last decisions.

The engine is the loop's alone: an HTTP handler never walks it. Instead a handler says what
it wants (`Views.get`: the list of shops, one shop, one shop's explanation or its grey
tests) and renders
the latest `View`, plain data the loop built between batches (`Views.due` / `Views.build`,
synchronous: no batch runs meanwhile). The loop builds only what was asked for in the last
`WANTED_S`, at most once every `BUILD_EVERY_S`: an idle console costs nothing, a busy one
one build a second. No call is long, whatever is asked (contract §6): the list of shops is
read `STEP_BUDGET_S` at a time over several calls (the loop does not sleep meanwhile:
`building`), and a view holds at most `MAX_PARTS` shops, explanations and grey tests, the
most recently asked. A handler whose answer is not in the latest view, or whose view is older
than `STALE_S`, waits for the next build (at most `WAIT_S`; the loop wakes at least once a
second).

`Decisions` keeps each shop's last `DECISIONS_KEPT` outputs as `Intake.add_output` passes
them (references to the frozen events; rendered only when a view is built). They are not
engine state and not checkpointed: they start empty after a restart, and a shop's are
forgotten when it is restored, set aside or let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from daemon.core.engine import Engine
from daemon.core.explain import explain_shop
from daemon.core.model import rule_key
from daemon.core.view import experiments_view, shop_summary, shop_view
from daemon.service.holdings import Holdings
from topics.events import Assignment, OutputEvent, QueueUpdate, SessionClosed

DECISIONS_KEPT = 50
WANTED_S = 10.0  # a view part asked for within this long is built
BUILD_EVERY_S = 1.0
STALE_S = 2.0
WAIT_S = 3.0
MAX_PARTS = 16  # shop views, explanations, grey tests built per view, the most recent first
STEP_BUDGET_S = 0.002  # the list of shops is read about this long per loop call
STEP_SHOPS = 50  # shops summarized between two looks at the clock

LIST = ("list", "")  # what `Views.get` is asked: LIST, or (kind, id) for a kind of PARTS
PARTS = ("shop", "explain", "experiment")
Ask = tuple[str, str]


class Decisions:
    """The last outputs of every shop, newest last (module docstring)."""

    def __init__(self, kept: int = DECISIONS_KEPT) -> None:
        self._kept = kept
        self._by_shop: dict[str, deque[OutputEvent]] = {}

    def add(self, event: OutputEvent) -> None:
        """Remember an output of a shop (dead letters are not decisions)."""
        if isinstance(event, Assignment | QueueUpdate | SessionClosed):
            ring = self._by_shop.get(event.shop_id)
            if ring is None:
                ring = self._by_shop[event.shop_id] = deque(maxlen=self._kept)
            ring.append(event)

    def forget(self, shop_ids: Iterable[str] | None = None) -> None:
        """Forget the decisions of `shop_ids` (of every shop when None)."""
        if shop_ids is None:
            self._by_shop.clear()
        else:
            for shop_id in shop_ids:
                self._by_shop.pop(shop_id, None)

    def keep_only(self, shop_ids: Iterable[str]) -> None:
        """Forget the decisions of every shop not in `shop_ids`."""
        keep = set(shop_ids)
        self.forget([s for s in self._by_shop if s not in keep])

    def rows(self, shop_id: str) -> list[dict[str, Any]]:
        """A shop's decisions as JSON-able rows, newest first."""
        return [decision_row(e) for e in reversed(self._by_shop.get(shop_id, ()))]


def decision_row(event: OutputEvent) -> dict[str, Any]:
    """One decision as the API shows it: every key present, null where it does not apply."""
    row: dict[str, Any] = {
        "at": event.ts,
        "type": "",
        "buyer_id": None,
        "agent_id": None,
        "group": None,
        "reason": None,
        "rule": None,
        "position": None,
        "estimated_wait_s": None,
        "waited_ms": None,
    }
    if isinstance(event, Assignment):
        row.update(
            type="assignment", buyer_id=event.buyer_id, agent_id=event.agent_id,
            group=event.group, reason=event.reason.value,
            rule=rule_key(event.reason.value, event.mode), waited_ms=event.waited_ms,
        )  # fmt: skip
    elif isinstance(event, QueueUpdate):
        row.update(
            type="queue_update", buyer_id=event.buyer_id, group=event.group,
            reason=event.status.value, position=event.position,
            estimated_wait_s=event.estimated_wait_s,
        )  # fmt: skip
    elif isinstance(event, SessionClosed):
        row.update(
            type="session_closed", buyer_id=event.buyer_id, agent_id=event.agent_id,
            reason=event.reason.value,
        )  # fmt: skip
    return row


@dataclass(frozen=True, slots=True)
class View:
    """What the loop saw at `at` (epoch ms): plain data, never changed once built."""

    at: int
    built: float  # time.monotonic() of the build
    owned: frozenset[str]  # shops served here (owned, not set aside)
    set_aside: dict[str, str] = field(default_factory=dict)  # owned shops set aside: why
    summaries: list[dict[str, Any]] | None = None  # /api/shops, when asked
    shops: dict[str, dict[str, Any]] = field(default_factory=dict)  # /api/shops/{id}
    explains: dict[str, dict[str, Any]] = field(default_factory=dict)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)  # .../experiment

    def has(self, ask: Ask) -> bool:
        """Whether this view answers `ask` (or shows it cannot: a shop not served here)."""
        kind, shop_id = ask
        if kind == "list":
            return self.summaries is not None
        if shop_id not in self.owned:
            return True
        return shop_id in self.part(kind)

    def part(self, kind: str) -> dict[str, dict[str, Any]]:
        """The shops' answers of one kind of PARTS, by shop id."""
        if kind == "shop":
            return self.shops
        return self.explains if kind == "explain" else self.experiments


class Views:
    """The latest `View` and what handlers asked for (module docstring)."""

    def __init__(self, started_ms: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self._started_ms = started_ms  # when the shop files in force since the start were read
        self._clock = clock
        self._asked: dict[Ask, float] = {}  # what was asked, when (monotonic)
        self._waiting: list[asyncio.Future[None]] = []
        self.latest: View | None = None
        self._todo: list[str] | None = None  # shops of the list still to read, last first
        self._rows: list[dict[str, Any]] = []  # the list's summaries read so far

    async def get(self, ask: Ask) -> View | None:
        """The latest view, waiting for a build (up to WAIT_S) if it lacks `ask` or is
        stale; None if no view was ever built."""
        now = self._clock()
        self._asked[ask] = now
        view = self.latest
        if view is not None and view.has(ask) and now - view.built < STALE_S:
            return view
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting = [f for f in self._waiting if not f.done()]  # timed out while recovering
        self._waiting.append(future)
        with contextlib.suppress(TimeoutError):  # the loop is recovering: answer what there is
            await asyncio.wait_for(future, WAIT_S)
        return self.latest

    @property
    def building(self) -> bool:
        """Whether a list of shops is half read (the loop should not sleep meanwhile)."""
        return self._todo is not None

    def due(self) -> bool:
        """Whether the loop should build a view now (or go on reading the list)."""
        if self._todo is not None:
            return True
        now = self._clock()
        built = self.latest.built if self.latest is not None else -BUILD_EVERY_S
        if now - built < BUILD_EVERY_S:
            return False
        self._asked = {a: t for a, t in self._asked.items() if now - t < WANTED_S}
        return bool(self._asked)

    def build(self, engine: Engine, held: Holdings, decisions: Decisions, now_ms: int) -> None:
        """Build the parts asked for from the engine's current state (call between batches
        only), then wake the handlers waiting for it. The list of shops is read a slice at a
        time (about STEP_BUDGET_S a call: the view is published once the slice that ends it
        is read), and at most MAX_PARTS shops or explanations are built a view, the most
        recently asked first: no number of requests makes one call long."""
        aside = {s: a.cause for s, a in held.set_aside.items()}
        partition_of = held.partition_of
        served = (s for s in partition_of if s in engine.shops and s not in aside)
        owned = frozenset(served)
        summaries = None
        if LIST in self._asked:
            if self._todo is None:
                self._todo, self._rows = sorted(owned, reverse=True), []
            if not self._read_list(engine, owned, now_ms):
                return
            summaries, self._todo, self._rows = self._rows, None, []
        shops: dict[str, dict[str, Any]] = {}
        explains: dict[str, dict[str, Any]] = {}
        experiments: dict[str, dict[str, Any]] = {}
        parts = [a for a in self._asked if a[0] != "list" and a[1] in owned]
        parts.sort(key=self._asked.__getitem__, reverse=True)
        for kind, shop_id in parts[:MAX_PARTS]:
            shop = engine.shops[shop_id]
            at = max(now_ms, shop.now)
            if kind == "shop":
                loaded = shop.state.config_at  # None: in force since this daemon started
                shops[shop_id] = {
                    **shop_view(shop, at),
                    "config_loaded_at": self._started_ms if loaded is None else loaded,
                    "decisions": decisions.rows(shop_id),
                }
            elif kind == "explain":
                explains[shop_id] = {
                    **explain_shop(shop, at),
                    "partition": partition_of.get(shop_id),
                }
            else:
                experiments[shop_id] = experiments_view(shop_id, shop.state.experiments, at)
        view = View(now_ms, self._clock(), owned, aside, summaries, shops, explains, experiments)
        self.latest = view
        waiting, self._waiting = self._waiting, []
        for future in waiting:
            if not future.done():
                future.set_result(None)

    def _read_list(self, engine: Engine, owned: frozenset[str], now_ms: int) -> bool:
        """Summarize the next shops of the list for about STEP_BUDGET_S; whether done."""
        todo, rows = self._todo, self._rows
        assert todo is not None
        until = time.perf_counter() + STEP_BUDGET_S
        while todo:
            for _ in range(min(len(todo), STEP_SHOPS)):
                shop_id = todo.pop()
                if shop_id in owned:  # else: let go or set aside since the list began
                    rows.append(shop_summary(engine.shops[shop_id], now_ms))
            if time.perf_counter() >= until:
                break
        return not todo
