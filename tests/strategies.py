"""Hypothesis strategies for the routing core: small shops and timed event sequences.

`cases()` draws a `Case`: a small shop file (2–6 agents, 1–3 groups that share agents, match
rules, tight caps, every mode, queueing on or off, reply deadlines from seconds to the
default 3m, overdue agents busy or not, mostly without `reassign_after` and otherwise with
one shorter or longer than the deadline, in 1 shop in 4 a grey test) and a list of `Step`s.
A step waits `dt` milliseconds, then does one `Action`: an input event, a duplicate of an
earlier event id, a plain timer wake-up, or a jump to the engine's next deadline. Event ids
are handed out by the driver ("e1", "e2", ...), so a case is plain data that replays
identically.

Drawing dozens of nested strategies per step made generation 20 times slower than running
the engine, so a shop and each step are decoded from a few random bytes instead: every
choice below is one byte picking from a table (repeats in a table are its weights, and a
byte shrinks toward the table's first entry — the simplest choice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import strategies as st

from daemon.core.config import ShopConfig
from topics.events import (
    AgentStatsReported,
    AgentStatus,
    AgentStatusChanged,
    BuyerInquired,
    BuyerLeft,
    InputEvent,
    InquiryContext,
    MessageSent,
    OrderPlaced,
    SessionTransferred,
)

SHOP = "shop"
T0 = 1_700_000_000_000
SECOND, MINUTE, HOUR = 1000, 60_000, 3_600_000

BUYERS = ("b1", "b2", "b3", "b4")
GHOST_AGENT = "ghost"  # an agent id no shop configures
GHOST_GROUP = "nowhere"  # a group name no shop defines
IN_SESSION = "@session"  # stands for the buyer of the oldest open session (its agent)
NEWEST_SESSION = "@newest"  # the buyer of the newest open session
CROWDS = ("vip", "new", "old")
ITEMS = ("sku1", "sku2")
INTENTS = ("presale", "aftersale", "chat")
ORDER_STATUSES = ("none", "unpaid", "shipped")
MODES = ("efficiency", "average", "weighted", "conversion")  # the default first
POLICIES = (*MODES, "conversion:low", "conversion:mid", "conversion:high")  # contract §3.7

T = TypeVar("T")


# ------------------------------------------------------------------------------ actions


@dataclass(frozen=True)
class Inquiry:
    buyer: str
    crowd: tuple[str, ...] = ()
    item: str | None = None
    intent: str | None = None
    order_status: str | None = None
    priority: int = 0


@dataclass(frozen=True)
class Leave:
    buyer: str


@dataclass(frozen=True)
class Order:
    buyer: str
    amount: float | None = None


@dataclass(frozen=True)
class Transfer:
    buyer: str
    to_agent: str | None = None
    to_group: str | None = None


@dataclass(frozen=True)
class BuyerSays:
    buyer: str


@dataclass(frozen=True)
class AgentSays:
    buyer: str
    agent: str


@dataclass(frozen=True)
class Status:
    agent: str
    status: str


@dataclass(frozen=True)
class Stats:
    agent: str
    rate: float


EventAction = Inquiry | Leave | Order | Transfer | BuyerSays | AgentSays | Status | Stats


@dataclass(frozen=True)
class Duplicate:
    """`event` sent again under the id of the event sent `back` events ago (1 = last)."""

    back: int
    event: EventAction


@dataclass(frozen=True)
class Late:
    """`event` handed over with a `now` `by` ms before the latest the engine saw (the clock
    does not move): the engine must treat it as the latest time (docs/routing.md, Time)."""

    by: int
    event: EventAction


@dataclass(frozen=True)
class Tick:
    """Only wake the engine's timers (`on_timer(now)`)."""


@dataclass(frozen=True)
class ToDeadline:
    """Jump to `next_deadline()` (if any) and wake the timers there."""


Action = EventAction | Duplicate | Late | Tick | ToDeadline


@dataclass(frozen=True)
class Step:
    dt: int  # milliseconds to wait before the action
    action: Action


@dataclass(frozen=True)
class Case:
    """A shop file (as the plain data a TOML file would hold) and what happens to it."""

    shop: dict[str, Any]
    steps: tuple[Step, ...]

    @property
    def config(self) -> ShopConfig:
        return ShopConfig.model_validate(self.shop)

    def __repr__(self) -> str:
        steps = [s for s in self.steps if s != Step(0, Tick())]  # no-ops, left by shrinking
        lines = ",\n    ".join(map(repr, steps))
        return f"Case(\n  shop={self.shop!r},\n  steps=[\n    {lines}\n  ],\n)"


def to_event(action: EventAction, event_id: str, now: int) -> InputEvent:
    """The decoded input event an action stands for."""
    base: dict[str, Any] = {"id": event_id, "shop_id": SHOP, "ts": now}
    event: InputEvent
    match action:
        case Inquiry(buyer, crowd, item, intent, order_status, priority):
            ctx = InquiryContext(crowd, item, intent, order_status)
            event = BuyerInquired(**base, buyer_id=buyer, context=ctx, priority=priority)
        case Leave(buyer):
            event = BuyerLeft(**base, buyer_id=buyer)
        case Order(buyer, amount):
            event = OrderPlaced(**base, buyer_id=buyer, amount=amount)
        case Transfer(buyer, to_agent, to_group):
            event = SessionTransferred(**base, buyer_id=buyer, to_agent=to_agent, to_group=to_group)
        case BuyerSays(buyer):
            event = MessageSent(**base, buyer_id=buyer, sender="buyer")
        case AgentSays(buyer, agent):
            event = MessageSent(**base, buyer_id=buyer, sender="agent", agent_id=agent)
        case Status(agent, status):
            event = AgentStatusChanged(**base, agent_id=agent, status=AgentStatus(status))
        case Stats(agent, rate):
            event = AgentStatsReported(**base, agent_id=agent, conversion_rate=rate)
    return event


# ------------------------------------------------------------------------------ decoding


class _Bytes:
    """Reads one choice per byte; past the end every byte is 0."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def byte(self) -> int:
        value = self.data[self.at] if self.at < len(self.data) else 0
        self.at += 1
        return value

    def pick(self, options: Sequence[T]) -> T:
        return options[self.byte() % len(options)]

    def subset(self, options: Sequence[T]) -> list[T]:
        """Each option with probability 1/4 (the byte's bit pairs)."""
        bits = self.byte()
        return [o for i, o in enumerate(options) if (bits >> (2 * i)) & 3 == 3]


def _chunks(size: int, min_size: int, max_size: int) -> st.SearchStrategy[list[bytes]]:
    return st.lists(st.binary(min_size=size, max_size=size), min_size=min_size, max_size=max_size)


# ------------------------------------------------------------------------------- shops

_NO_CAP = (None, None, None, 1, 2)
_BOTH = (True, False)


def _agent(index: int, data: bytes) -> dict[str, Any]:
    b = _Bytes(data)
    agent: dict[str, Any] = {
        "id": f"a{index + 1}",
        "weight": b.pick((1.0, 2.0, 0.5)),
        "level": b.pick((3, 1, 2, 4, 5)),
    }
    if cap := b.pick(_NO_CAP):
        agent["cap"] = cap
    return agent


def _group(index: int, data: bytes, agent_ids: list[str], n_groups: int) -> dict[str, Any]:
    b = _Bytes(data)
    members = b.byte()
    agents = [a for i, a in enumerate(agent_ids) if (members >> i) & 1]
    group: dict[str, Any] = {
        "name": f"g{index + 1}",
        "agents": agents or [agent_ids[members % len(agent_ids)]],
        "accept_unmatched": b.pick((True, True, False)),
        "match": {
            "crowd": b.subset(CROWDS),
            "items": b.subset(ITEMS),
            "intents": b.subset(INTENTS),
            "order_status": b.subset(ORDER_STATUSES),
        },
    }
    if mode := b.pick((None, *MODES)):
        group["mode"] = mode
        group["conversion_strength"] = b.pick(("mid", "low", "high"))
    if cap := b.pick(_NO_CAP):
        group["cap"] = cap
    later = [f"g{j + 1}" for j in range(index + 1, n_groups)]  # overflow only forward: no loop
    if later and (target := b.pick((None, *later))):
        group["overflow_to"] = target
    return group


def _shop(head: bytes, agent_rows: list[bytes], group_rows: list[bytes]) -> dict[str, Any]:
    b = _Bytes(head)
    agents = [_agent(i, row) for i, row in enumerate(agent_rows)]
    agent_ids = [a["id"] for a in agents]
    groups = [_group(i, row, agent_ids, len(group_rows)) for i, row in enumerate(group_rows)]
    names = [g["name"] for g in groups]
    queue: dict[str, Any] = {
        "enabled": b.pick((True, True, True, False)),
        "default_cap": b.pick((2, 1)),
        "session_timeout": b.pick((60, 120, "10m")),
        "repeat_entry_window": b.pick((0, 120, "30m")),
        "avg_handle_time": b.pick((30, "5m")),
        "max_wait": b.pick((0, 0, 30, 90)),
        "update_interval": b.pick((1, 10)),
        "priority_aging": b.pick((0, 0, 5, 60)),
    }
    if b.pick(_BOTH):
        queue["scope"] = "groups"
        queue["groups"] = b.subset(names) or [b.pick(names)]
    shop = {
        "id": SHOP,
        "mode": b.pick(MODES),
        "busy_threshold": b.pick((0, 1, 2)),
        "sticky_window": b.pick((0, 300, "72h")),
        "conversion_window": b.pick((0, 600, "24h")),
        "conversion_min_agents": b.pick((0, 1, 2)),
        "queue": queue,
        "agents": agents,
        "groups": groups,
    }
    replies = {  # the defaults first: 3m, overdue agents busy
        "deadline": b.pick(("3m", 5, 30, 90)),
        "overdue_is_busy": b.pick((True, True, False)),
    }
    if warn := b.pick((None, 2, 60)):
        replies["warn_after"] = warn
    if reassign := b.pick((None, None, None, None, 30, 100, "5m")):  # off most of the time
        replies["reassign_after"] = reassign
    shop["replies"] = replies
    if b.pick((None, None, None, True)):  # a grey test in 1 shop in 4 (contract §3.7)
        shop["experiment"] = _experiment(b)
    return shop


def _experiment(b: _Bytes) -> dict[str, Any]:
    """`[experiment]`: control and 1–2 other arms on policies drawn from the modes, a split
    adding to 100, sometimes guardrails (which random steps rarely count enough to trip)."""
    arms = ["control", *("treatment", "t2")[: b.pick((1, 1, 2))]]
    control = b.pick((50, 90, 34, 10))
    others = [(100 - control) // (len(arms) - 1)] * (len(arms) - 1)
    others[0] += 100 - control - sum(others)
    guardrails = b.pick((
        {}, {}, {"p95_wait": "+20%"}, {"replies_within_deadline": "-3pp"},
        {"p95_wait": "+0%", "replies_within_deadline": "-0pp"},
    ))  # fmt: skip
    return {
        "name": b.pick(("grey", "conv-high-2026-12", "t1")),
        "arms": {arm: b.pick(POLICIES) for arm in arms},
        "split": dict(zip(arms, (control, *others), strict=True)),
        "guardrails": guardrails,
    }


def shops() -> st.SearchStrategy[dict[str, Any]]:
    """A small shop file that validates (see the module docstring)."""
    return st.builds(
        _shop, st.binary(min_size=30, max_size=30), _chunks(3, 2, 6), _chunks(12, 1, 3)
    )


# ------------------------------------------------------------------------------- steps

_DTS = (  # mostly seconds apart, sometimes past a session timeout or max_wait, rarely days
    (0,) * 8
    + (100, 300, 500, 800, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 7000, 9000, 12000)
    + (15000, 20000, 31 * SECOND, 61 * SECOND, 91 * SECOND, 121 * SECOND)
    + (11 * MINUTE, 31 * MINUTE, 25 * HOUR, 73 * HOUR)
)
_KINDS = (
    ("nothing",)  # all-zero bytes: what shrinking turns an irrelevant step into
    + ("inquiry",) * 8
    + ("status",) * 4
    + ("buyer_says",) * 4  # buyers who wrote last make agents busy (contract §3.4)
    + ("agent_says", "agent_says", "transfer", "transfer")
    + ("leave", "order", "order", "stats", "duplicate", "late", "tick", "deadline")
)
_STATUSES = ("online", "online", "suspended", "offline")
_STEP_BYTES = 10


def _event(kind: str, b: _Bytes, agent_ids: list[str], groups: list[str]) -> EventAction:
    buyer = b.pick(BUYERS)
    in_session = b.pick((IN_SESSION, NEWEST_SESSION, buyer))
    agent = b.pick((*agent_ids * 3, GHOST_AGENT))
    if kind == "inquiry":
        crowd = tuple(b.subset(CROWDS))
        item, intent = b.pick((None, *ITEMS)), b.pick((None, *INTENTS))
        order_status = b.pick((None, *ORDER_STATUSES))
        return Inquiry(buyer, crowd, item, intent, order_status, priority=b.pick((0, 1, 2)))
    if kind == "status":
        return Status(agent, b.pick(_STATUSES))
    if kind == "transfer":
        if b.pick(_BOTH):
            return Transfer(in_session, to_agent=agent)
        return Transfer(in_session, to_group=b.pick((*groups * 3, GHOST_GROUP)))
    if kind == "agent_says":
        return AgentSays(in_session, b.pick((IN_SESSION, IN_SESSION, agent)))
    simple: dict[str, EventAction] = {
        "buyer_says": BuyerSays(in_session),
        "leave": Leave(buyer),
        "order": Order(b.pick((in_session, buyer)), b.pick((None, 9.5))),
        "stats": Stats(agent, b.pick((0.0, 0.05, 0.3, 1.0))),
    }
    return simple[kind]


def _step(data: bytes, agent_ids: list[str], groups: list[str]) -> Step:
    b = _Bytes(data)
    dt, kind = b.pick(_DTS), b.pick(_KINDS)
    if kind in ("nothing", "tick"):
        return Step(dt, Tick())
    if kind == "deadline":
        return Step(dt, ToDeadline())
    if kind in ("duplicate", "late"):
        n = b.pick((1, 2, 3, 4, 5))
        event = _event(b.pick(_KINDS[1:-4]), b, agent_ids, groups)
        return (
            Step(dt, Duplicate(n, event)) if kind == "duplicate" else Step(0, Late(n * 7000, event))
        )
    return Step(dt, _event(kind, b, agent_ids, groups))


@st.composite
def cases(draw: st.DrawFn, min_steps: int = 15, max_steps: int = 60) -> Case:
    """A shop and a sequence of steps for it, after some agents came online."""
    shop = draw(shops())
    agent_ids = [a["id"] for a in shop["agents"]]
    groups = [g["name"] for g in shop["groups"]]
    offline = draw(st.binary(min_size=1, max_size=1))[0]  # agents not online from the start
    prologue = [
        Step(0, Status(a, "online")) for i, a in enumerate(agent_ids) if not offline >> i & 1
    ]
    rows = draw(_chunks(_STEP_BYTES, min_steps, max_steps))
    return Case(shop, (*prologue, *(_step(row, agent_ids, groups) for row in rows)))
