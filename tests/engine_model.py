"""The model behind `tests/core/test_engine_properties.py`: a driver and the shop's rules.

`Driver` feeds a case's steps to an `Engine` in virtual time; `Rules` is what the shop file
and the contract say, independently of the engine; the dataclasses after it are the
observer's records (`tests/engine_observer.py`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from daemon.core.config import ShopConfig
from daemon.core.engine import Engine, EventRejected
from daemon.core.experiment import Experiment
from tests.strategies import (
    BUYERS,
    IN_SESSION,
    NEWEST_SESSION,
    SHOP,
    T0,
    AgentSays,
    BuyerSays,
    Duplicate,
    EventAction,
    Late,
    Order,
    Step,
    Tick,
    ToDeadline,
    Transfer,
    to_event,
)
from topics.events import (
    Assignment,
    AssignReason,
    InputEvent,
    InquiryContext,
    Mode,
    OutputEvent,
    QueueStatus,
    SessionClosed,
)

# ------------------------------------------------------------------------------- driver


@dataclass
class StepResult:
    """What one step did: the timers woken first, then the event's own outputs."""

    step: Step
    now: int
    event: InputEvent | None
    timer: list[OutputEvent]
    own: list[OutputEvent]
    rejected: str | None

    @property
    def outputs(self) -> list[OutputEvent]:
        return self.timer + self.own


class Driver:
    """Feeds a case's steps to an engine in virtual time."""

    def __init__(self, config: ShopConfig, *, fire_first: bool = True, track: bool = False) -> None:
        self.config = config
        self.engine = Engine({SHOP: config}, track=track)
        self.engine.on_timer(T0)  # the engine's clock starts at T0
        self.fire_first = fire_first
        self.now = T0
        self.fresh = itertools.count(1)
        self.sent: list[str] = []
        self.open: dict[str, str] = {}  # buyer -> agent, per the outputs

    def run(self, step: Step) -> StepResult:
        self.now += step.dt
        action = step.action
        if isinstance(action, ToDeadline):
            self.now = max(self.now, self.engine.next_deadline() or self.now)
        if isinstance(action, Tick | ToDeadline):
            timer = self.engine.on_timer(self.now)
            self.follow(timer)
            return StepResult(step, self.now, None, timer, [], None)
        event_id, now = None, self.now
        if isinstance(action, Duplicate):
            event_id = self.sent[-min(action.back, len(self.sent))] if self.sent else None
            action = action.event
        elif isinstance(action, Late):
            now, action = self.now - action.by, action.event
        event_id = event_id or f"e{next(self.fresh)}"
        self.sent.append(event_id)
        event = to_event(self.resolve(action), event_id, now)
        timer = self.engine.on_timer(now) if self.fire_first else []
        self.follow(timer)
        try:
            own, rejected = self.engine.handle(event, now), None
        except EventRejected as exc:
            own, rejected = exc.outputs, exc.reason
        self.follow(own)
        return StepResult(step, self.now, event, timer, own, rejected)

    def follow(self, outputs: list[OutputEvent]) -> None:
        """Track open sessions (oldest first) from the outputs, for `resolve`."""
        for o in outputs:
            if isinstance(o, SessionClosed):
                self.open.pop(o.buyer_id, None)
            elif isinstance(o, Assignment) and o.reason is not AssignReason.ACTIVE_SESSION:
                self.open[o.buyer_id] = o.agent_id

    def resolve(self, action: EventAction) -> EventAction:
        """Name the buyer of the oldest (newest) open session where the action says
        IN_SESSION (NEWEST_SESSION), and its agent where an agent's message says IN_SESSION."""
        if isinstance(action, Transfer | BuyerSays | AgentSays | Order):
            if action.buyer == IN_SESSION:
                action = replace(action, buyer=next(iter(self.open), BUYERS[0]))
            elif action.buyer == NEWEST_SESSION:
                action = replace(action, buyer=next(reversed(self.open), BUYERS[0]))
        if isinstance(action, AgentSays) and action.agent == IN_SESSION:
            action = replace(action, agent=self.open.get(action.buyer, self.config.agents[0].id))
        return action

    def snapshot(self) -> Any:
        """The engine's snapshot as it comes back from JSON."""
        return orjson.loads(orjson.dumps(self.engine.snapshot()))

    def restart(self) -> None:
        """Snapshot through JSON and continue on a freshly restored engine (whose clock
        is the old one's: the restarted daemon's clock is not earlier)."""
        latest = self.engine.now
        self.engine = Engine.restore({SHOP: self.config}, self.snapshot())
        self.engine.now = latest

    def restart_from(self, data: dict[str, Any]) -> None:
        """Continue on a tracking engine restored from `data` (e.g. checkpoint deltas).

        A checkpoint's clock may lag (time passing alone is not a change worth writing);
        the restarted daemon's own clock is later, which is what taking `now` over means.
        """
        now, latest = self.engine.shop(SHOP).now, self.engine.now
        self.engine = Engine({SHOP: self.config}, track=True)
        self.engine.restore_shop(SHOP, data)
        self.engine.now = latest
        shop = self.engine.shop(SHOP)
        shop.now = max(shop.now, now)


# -------------------------------------------------------------------------- shop rules

NO_MATCH = "\0no match"  # candidate_key of an inquiry no group takes
Key = str | None  # a queue: group name, or None for the pool of several groups


class Rules:
    """What the shop file and the contract say, independently of the engine."""

    def __init__(self, config: ShopConfig) -> None:
        self.config = config
        self.agents = {a.id: a for a in config.agents}
        self.groups = {g.name: g for g in config.groups}
        self.grouped = {a for g in config.groups for a in g.agents}
        accepting = [g for g in config.groups if g.accept_unmatched]
        self.pool_key: Key = NO_MATCH
        if accepting:
            self.pool_key = accepting[0].name if len(accepting) == 1 else None
        self.pool_members: dict[str, str] = {}
        for g in accepting:
            for agent in g.agents:
                self.pool_members.setdefault(agent, g.name)
        exp = config.experiment  # contract §3.7: its own instance, for the arms alone
        self.experiment = None if exp is None else Experiment(exp, T0)

    def arm(self, buyer: str) -> str | None:
        """The buyer's arm in the shop's grey test, or None without one."""
        return None if self.experiment is None else self.experiment.arm_of(buyer)

    def queueing(self, group: str) -> bool:
        q = self.config.queue
        return q.enabled and (q.scope == "shop" or group in q.groups)

    def cap(self, agent: str, group: str) -> int | None:
        """contract §2: agent cap, else group cap, else default; None without queueing."""
        if not self.queueing(group):
            return None
        own = self.agents[agent].cap
        return own or self.groups[group].cap or self.config.queue.default_cap

    def members(self, key: Key) -> dict[str, str]:
        """Agents of a candidate and the group each is chosen in."""
        if key is None:
            return self.pool_members
        return dict.fromkeys(self.groups[key].agents, key)

    def mode(self, key: Key) -> Mode:
        """A group's mode, else the shop's (which the pool of several groups uses)."""
        group_mode = None if key is None else self.groups[key].mode
        return group_mode or self.config.mode

    def candidate_key(self, ctx: InquiryContext) -> Key:
        """contract §3 rule 4: crowd, item, intent, order status, then the pool."""
        dims: list[tuple[Iterable[str | None], str]] = [
            (ctx.crowd, "crowd"),
            ((ctx.item_id,), "items"),
            ((ctx.intent,), "intents"),
            ((ctx.order_status,), "order_status"),
        ]
        for values, dim in dims:
            for group in self.config.groups:
                if set(values) & set(getattr(group.match, dim)):
                    return group.name
        return self.pool_key


# ------------------------------------------------------------------------------ observer


def standing(priority: int, waited: int, aging: int) -> int:
    """contract §3.1: the effective priority, priority + waited ÷ aging, times aging (exact,
    so that equal standings compare equal); without aging the priority."""
    return priority * aging + waited if aging else priority


@dataclass
class Entry:
    """A queued buyer, per the queue updates."""

    inquiry_id: str
    buyer: str
    priority: int
    arrival: int  # order of first `queued`; overflow keeps it
    key: Key
    queued_at: int  # first `queued`: the wait that ages the priority counts from here
    entered_at: int  # `queued` in the current queue
    aging: int  # the shop's `queue.priority_aging` (ms; 0: off)
    published: int = 0  # the position the last `queued` / `waiting` gave
    stale_since: int | None = None  # when the real position left the published one

    def order(self, now: int) -> tuple[int, int, int]:
        """Its place in line at `now`: higher effective priority, then earlier arrival."""
        rank = -standing(self.priority, now - self.queued_at, self.aging)
        return (rank, self.queued_at, self.arrival)


@dataclass
class Open:
    """An open session, per the assignments and messages."""

    inquiry_id: str
    agent: str
    group: str | None
    key: Key  # the candidate the agent was chosen in
    started_at: int
    last_agent_at: int  # assignment, or the latest agent message
    buyer_waiting: bool = False  # the buyer wrote last
    owed_since: int = 0  # while the buyer waits: when its reply clock started (§3.6)
    answered: bool = False  # an agent has written in this session
    moved: bool = False  # opened by a move for an unanswered first message (§3.6)

    def overdue(self, at: int, deadline: int) -> bool:
        """contract §3.6: the buyer's reply clock has run `deadline` by `at`."""
        return self.buyer_waiting and self.owed_since + deadline <= at

    def move_due(self, reassign_after: int) -> int | None:
        """contract §3.6: when the session's first buyer message will have gone unanswered
        `reassign_after` (counted from the session's start when the question came along with
        a transfer), or None: off, no question waits, an agent has written in the session,
        or the session was opened by a move (a buyer moves once)."""
        if not reassign_after or not self.buyer_waiting or self.answered or self.moved:
            return None
        return max(self.owed_since, self.started_at) + reassign_after


@dataclass
class Ended:
    """A buyer's last ended session: for repeat entry and sticky."""

    agent: str
    key: Key
    ended_at: int


@dataclass
class Moving:
    """A session closed `unanswered`: its move's assignment must come next (contract §3.6).
    `eligible`: the agents of its candidate eligible just before the close, the silent one
    among them if it was (the mode is decided on those, the choice among the others)."""

    buyer: str
    session: Open
    eligible: list[str]


@dataclass
class Silent:
    """The agent who left a buyer's first message unanswered (moved away from, or stranded
    with until the session closed), and when: sticky and repeat entry must not lead the buyer
    back to it for `sticky_window` (contract §3.6)."""

    agent: str
    at: int


@dataclass
class Expected:
    """What contract §3 says an inquiry from a buyer without session or queue gets."""

    outcome: AssignReason | QueueStatus
    agents: set[str]  # who may take it (empty when it queues)
    key: Key


TERMINAL = {"assigned", "left", "expired", "dequeued"}
OPENING = {  # the assignments that open a session for an inquiry (contract §3.7)
    AssignReason.ROUTED, AssignReason.DEQUEUED, AssignReason.STICKY, AssignReason.REPEAT_ENTRY,
}  # fmt: skip
