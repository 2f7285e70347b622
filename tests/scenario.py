"""A small language for routing-rule tests: given a shop, when these events at these times,
then these outputs.

    sc = Scenario(shop(agents=["a1", "a2"], groups=[group("g", ["a1", "a2"])]))
    sc.at("0s").online("a1", "a2")
    sc.at("5s").inquiry("b1")
    assert sc.assigned("b1") == ("a1", "routed")

Times are offsets from a fixed epoch (`"90s"`, `"10m"`, or milliseconds as an int). Every
step returns the outputs it produced; `sc.outputs` keeps them all. A rejected event records
its reason in `sc.rejections` instead of raising, unless the test asks for `expect_reject`.
"""

from __future__ import annotations

import itertools
from typing import Any

from daemon.core.config import ShopConfig, parse_duration_ms
from daemon.core.engine import Engine, EventRejected
from topics.events import (
    AgentStatsReported,
    AgentStatus,
    AgentStatusChanged,
    Assignment,
    BuyerInquired,
    BuyerLeft,
    InputEvent,
    InquiryContext,
    MessageSent,
    OrderPlaced,
    OutputEvent,
    QueueUpdate,
    SessionClosed,
    SessionTransferred,
)

T0 = 1_700_000_000_000
SHOP = "shop"


def group(name: str, agents: list[str], **kw: Any) -> dict[str, Any]:
    """A `[[groups]]` table."""
    return {"name": name, "agents": agents, **kw}


def shop(
    agents: list[str] | list[dict[str, Any]],
    groups: list[dict[str, Any]] | None = None,
    queue: dict[str, Any] | None = None,
    **kw: Any,
) -> ShopConfig:
    """A shop config; agents may be plain ids. Defaults: one group with every agent."""
    rows = [a if isinstance(a, dict) else {"id": a} for a in agents]
    ids = [r["id"] for r in rows]
    data: dict[str, Any] = {
        "id": SHOP,
        "agents": rows,
        "groups": groups or [group("g", ids)],
        **kw,
    }
    if queue is not None:
        data["queue"] = queue
    return ShopConfig.model_validate(data)


def ms(t: str | int) -> int:
    """A test time: int milliseconds, or a duration string such as "90s"."""
    return t if isinstance(t, int) else parse_duration_ms(t)


class Scenario:
    """Drives an Engine for one shop in virtual time and records what it decided."""

    def __init__(self, config: ShopConfig, *, track: bool = False) -> None:
        self.config = config
        self.engine = Engine({SHOP: config}, track=track)  # track: for take_deltas
        self.now = T0
        self.outputs: list[OutputEvent] = []
        self.rejections: list[str] = []
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------------ driving

    def at(self, t: str | int) -> Scenario:
        """Move the clock to T0 + t and fire the timers due by then."""
        new = T0 + ms(t)
        assert new >= self.now, "scenario time runs forward"
        self.now = new
        self.outputs.extend(self.engine.on_timer(self.now))
        return self

    def after(self, t: str | int) -> Scenario:
        """Move the clock forward by t."""
        return self.at(self.now - T0 + ms(t))

    def send(self, event: InputEvent) -> list[OutputEvent]:
        """Feed one event now; a rejection is recorded in `rejections`."""
        try:
            out = self.engine.handle(event, self.now)
        except EventRejected as rejected:
            self.rejections.append(rejected.reason)
            out = rejected.outputs
        self.outputs.extend(out)
        return out

    def expect_reject(self, event: InputEvent) -> str:
        """Feed an event that must be rejected; return the reason."""
        before = len(self.rejections)
        self.send(event)
        assert len(self.rejections) == before + 1, f"{event} was not rejected"
        return self.rejections[-1]

    def next_id(self, prefix: str = "e") -> str:
        """A fresh event id."""
        return f"{prefix}{next(self._ids)}"

    def _base(self, event_id: str | None, prefix: str) -> dict[str, Any]:
        return {"id": event_id or self.next_id(prefix), "shop_id": SHOP, "ts": self.now}

    def inquiry(
        self,
        buyer: str,
        *,
        crowd: tuple[str, ...] | list[str] = (),
        item: str | None = None,
        intent: str | None = None,
        order_status: str | None = None,
        priority: int = 0,
        id: str | None = None,
    ) -> str:
        """A buyer clicks "contact us"; returns the inquiry id."""
        ctx = InquiryContext(tuple(crowd), item, intent, order_status)
        base = self._base(id, "i")
        self.send(BuyerInquired(**base, buyer_id=buyer, context=ctx, priority=priority))
        return str(base["id"])

    def leave(self, buyer: str) -> list[OutputEvent]:
        """The buyer closes the window."""
        return self.send(BuyerLeft(**self._base(None, "l"), buyer_id=buyer))

    def order(self, buyer: str, amount: float | None = None) -> list[OutputEvent]:
        """The buyer places an order."""
        return self.send(OrderPlaced(**self._base(None, "o"), buyer_id=buyer, amount=amount))

    def transfer(
        self, buyer: str, *, to_agent: str | None = None, to_group: str | None = None
    ) -> SessionTransferred:
        """An agent hands the buyer over; returns the event (for its id)."""
        event = SessionTransferred(
            **self._base(None, "t"), buyer_id=buyer, to_agent=to_agent, to_group=to_group
        )
        self.send(event)
        return event

    def says(self, buyer: str) -> list[OutputEvent]:
        """The buyer writes a message."""
        return self.send(MessageSent(**self._base(None, "m"), buyer_id=buyer, sender="buyer"))

    def replies(self, buyer: str, agent: str) -> list[OutputEvent]:
        """The agent writes to the buyer."""
        return self.send(
            MessageSent(**self._base(None, "m"), buyer_id=buyer, sender="agent", agent_id=agent)
        )

    def chats(self, chats: list[tuple[str, int]], start: int = 1_000) -> int:
        """Buyers come one a second from `start` (ms), each writes at once and its agent
        answers after the buyer's delay (ms); the events in time order. The time of the
        last one."""
        events: list[tuple[int, int, str]] = []
        for i, (buyer, delay) in enumerate(chats):
            t = start + 1_000 * i
            events += [(t, 0, buyer), (t + 1, 1, buyer), (t + delay, 2, buyer)]
        for t, kind, buyer in sorted(events):
            self.at(t)
            if kind == 0:
                self.inquiry(buyer)
            elif kind == 1:
                self.says(buyer)
            else:
                self.replies(buyer, self.assignments(buyer)[-1].agent_id)
        return max(t for t, _, _ in events)

    def status(self, status: str, *agents: str) -> list[OutputEvent]:
        """Agents change reception state."""
        out: list[OutputEvent] = []
        for agent in agents:
            event = AgentStatusChanged(
                **self._base(None, "s"), agent_id=agent, status=AgentStatus(status)
            )
            out.extend(self.send(event))
        return out

    def online(self, *agents: str) -> list[OutputEvent]:
        """Agents go online."""
        return self.status("online", *agents)

    def stats(self, agent: str, rate: float) -> list[OutputEvent]:
        """An external conversion rate for an agent."""
        return self.send(
            AgentStatsReported(**self._base(None, "x"), agent_id=agent, conversion_rate=rate)
        )

    def reload(self, config: ShopConfig) -> list[OutputEvent]:
        """Apply a new shop file."""
        out = self.engine.reconfigure({SHOP: config}, self.now)
        self.outputs.extend(out)
        self.config = config
        return out

    # ------------------------------------------------------------------------ looking

    def assignments(self, buyer: str | None = None) -> list[Assignment]:
        """Every assignment so far (of one buyer)."""
        return [
            o
            for o in self.outputs
            if isinstance(o, Assignment) and (buyer is None or o.buyer_id == buyer)
        ]

    def assignment(self, buyer: str) -> Assignment:
        """The buyer's latest assignment."""
        found = self.assignments(buyer)
        assert found, f"{buyer} was never assigned; outputs: {self.outputs}"
        return found[-1]

    def assigned(self, buyer: str) -> tuple[str, str]:
        """(agent, reason) of the buyer's latest assignment."""
        a = self.assignment(buyer)
        return a.agent_id, a.reason.value

    def updates(self, buyer: str | None = None) -> list[QueueUpdate]:
        """Every queue update so far (of one buyer)."""
        return [
            o
            for o in self.outputs
            if isinstance(o, QueueUpdate) and (buyer is None or o.buyer_id == buyer)
        ]

    def queue_status(self, buyer: str) -> str | None:
        """Status of the buyer's latest queue update, or None."""
        found = self.updates(buyer)
        return found[-1].status.value if found else None

    def closed(self, buyer: str | None = None) -> list[SessionClosed]:
        """Every session_closed so far (of one buyer)."""
        return [
            o
            for o in self.outputs
            if isinstance(o, SessionClosed) and (buyer is None or o.buyer_id == buyer)
        ]

    def load(self, agent: str) -> int:
        """Open sessions of an agent, as the engine holds them."""
        return self.engine.shop(SHOP).agents[agent].load

    def share(self, agents: list[str]) -> dict[str, int]:
        """How many assignments each agent received so far."""
        counts = dict.fromkeys(agents, 0)
        for a in self.assignments():
            if a.agent_id in counts:
                counts[a.agent_id] += 1
        return counts
