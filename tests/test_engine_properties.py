"""Invariants of the routing core over random event sequences (CONTRACT 2–4 and 6).

Each case is a small random shop and a random sequence of timed steps (`tests/strategies.py`).
A `Driver` feeds the steps to an `Engine`; an `Observer` rebuilds, from the outputs, the
input events and the shop file alone, what the contract says the world looks like — agent
statuses, open sessions, loads and pending replies, queues in (−priority, arrival) order, the
fate of every inquiry — and checks one invariant per test as the outputs stream past (the
`checks` it is given; its bookkeeping fails every test, since all checks rely on it). Only
the no-stuck-buyer test also reads the engine's internals, since outputs cannot show an idle
agent. Where the contract is silent the observer follows docs/routing.md (rejected
transfers, shifts in `average`, the unmatched pool, transfers' groups).

The driver wakes the timers (`on_timer(now)`) before handing over each event, so the outputs
of `handle` are exactly the event's own; `test_handle_fires_due_timers_before_the_event`
pins that this changes nothing.

A failure prints the shrunk case (no-op steps left out) and the trace of events and outputs.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from daemon.core.config import ShopConfig
from daemon.core.engine import Engine, EventRejected
from tests.strategies import (
    BUYERS,
    IN_SESSION,
    NEWEST_SESSION,
    SHOP,
    T0,
    AgentSays,
    BuyerSays,
    Case,
    Duplicate,
    EventAction,
    Inquiry,
    Late,
    Status,
    Step,
    Tick,
    ToDeadline,
    Transfer,
    cases,
    to_event,
)
from topics.events import (
    AgentStatus,
    AgentStatusChanged,
    Assignment,
    AssignReason,
    BuyerInquired,
    BuyerLeft,
    CloseReason,
    InputEvent,
    InquiryContext,
    MessageSent,
    Mode,
    OutputEvent,
    QueueStatus,
    QueueUpdate,
    SessionClosed,
    SessionTransferred,
)

PROPERTY = settings(
    max_examples=250,
    deadline=None,
    # No Phase.explain: on Python 3.11 it traces every line and takes minutes per failure.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
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

    def __init__(self, config: ShopConfig, *, fire_first: bool = True) -> None:
        self.config = config
        self.engine = Engine({SHOP: config})
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
        if isinstance(action, Transfer | BuyerSays | AgentSays):
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
        """Snapshot through JSON and continue on a freshly restored engine."""
        self.engine = Engine.restore({SHOP: self.config}, self.snapshot())


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

    def queueing(self, group: str) -> bool:
        q = self.config.queue
        return q.enabled and (q.scope == "shop" or group in q.groups)

    def cap(self, agent: str, group: str) -> int | None:
        """CONTRACT 2: agent cap, else group cap, else default; None without queueing."""
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
        """CONTRACT 3 rule 4: crowd, item, intent, order status, then the pool."""
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


@dataclass
class Entry:
    """A queued buyer, per the queue updates."""

    inquiry_id: str
    buyer: str
    priority: int
    arrival: int  # order of first `queued`; overflow keeps it
    key: Key
    queued_at: int  # first `queued`
    entered_at: int  # `queued` in the current queue
    published: int = 0  # the position the last `queued` / `waiting` gave
    stale_since: int | None = None  # when the real position left the published one

    @property
    def order(self) -> tuple[int, int]:
        return (-self.priority, self.arrival)


@dataclass
class Open:
    """An open session, per the assignments and messages."""

    inquiry_id: str
    agent: str
    group: str | None
    key: Key  # the candidate the agent was chosen in
    last_agent_at: int  # assignment, or the latest agent message
    buyer_waiting: bool = False  # the buyer wrote last


@dataclass
class Ended:
    """A buyer's last ended session: for repeat entry and sticky."""

    agent: str
    key: Key
    ended_at: int


@dataclass
class Expected:
    """What CONTRACT 3 says an inquiry from a buyer without session or queue gets."""

    outcome: AssignReason | QueueStatus
    agents: set[str]  # who may take it (empty when it queues)
    key: Key


TERMINAL = {"assigned", "left", "expired", "dequeued"}


@dataclass
class Observer:
    """The world as the outputs describe it; see the module docstring.

    `checks` names the invariants that fail the test; the bookkeeping itself (a session
    closed that was never opened, say) always does, since every check relies on it.
    """

    config: ShopConfig
    checks: set[str]
    engine: Engine | None = None
    rules: Rules = field(init=False)
    status: dict[str, str] = field(init=False)
    now: int = T0
    last_ts: int = T0  # of the latest output: time never runs backwards
    sessions: dict[str, Open] = field(default_factory=dict)  # buyer -> open session
    load: Counter[str] = field(default_factory=Counter)
    pending: Counter[str] = field(default_factory=Counter)  # sessions the agent owes a reply
    shift: Counter[str] = field(default_factory=Counter)  # assignments since shift start
    last_assigned: Counter[str] = field(default_factory=Counter)
    previous: dict[str, Ended] = field(default_factory=dict)  # buyer -> last ended session
    transferred: Open | None = None  # the session a transfer is moving
    queues: dict[Key, dict[str, Entry]] = field(default_factory=dict)
    queued: dict[str, Entry] = field(default_factory=dict)  # buyer -> entry
    priority: dict[str, int] = field(default_factory=dict)  # inquiry id -> priority
    fate: dict[str, str] = field(default_factory=dict)  # inquiry id -> where it stands
    joined: dict[str, str] = field(default_factory=dict)  # inquiry id -> entry it joined
    accepted: list[str] = field(default_factory=list)  # accepted inquiry ids
    assigned_to: dict[str, str] = field(default_factory=dict)  # inquiry id -> agent
    update_n: Counter[str] = field(default_factory=Counter)
    seen: set[str] = field(default_factory=set)  # accepted event ids
    output_ids: dict[str, OutputEvent] = field(default_factory=dict)
    outputs: list[OutputEvent] = field(default_factory=list)
    awaiting: Entry | None = None  # dequeued, its assignment must come next
    arrivals: Iterator[int] = field(default_factory=itertools.count)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rules = Rules(self.config)
        self.status = {a.id: "offline" for a in self.config.agents}
        for agent in self.config.agents:
            self.last_assigned[agent.id] = -1

    # -------------------------------------------------------------------- reporting

    def fail(self, check: str, message: str) -> None:
        if check in self.checks:
            raise AssertionError(f"[{check}] {message}\n--- trace ---\n" + "\n".join(self.log))

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            raise AssertionError(f"[bookkeeping] {message}\n--- trace ---\n" + "\n".join(self.log))

    # ------------------------------------------------------------------------ steps

    def on_step(self, result: StepResult) -> None:
        ev, self.now = result.event, result.now
        if ev is not None or result.timer:  # a step that did nothing is left out
            self.log.append(f"t={result.now - T0} {result.step.action if ev is None else ev}")
        for o in result.timer:
            self.output(o, None)
        if ev is not None:
            self.on_event(ev, result)
        self.expect(self.awaiting is None, "a dequeued buyer got no assignment")
        self.check_on_time()
        self.check_not_stuck()

    def on_event(self, ev: InputEvent, result: StepResult) -> None:
        if result.rejected is not None:
            self.log.append(f"  rejected: {result.rejected}")
        if ev.id in self.seen:
            if result.rejected is not None or result.own:
                self.fail("rejections", f"duplicate id {ev.id} was not ignored: {result.own}")
            return
        expected = self.refusal(ev)
        if (expected is not None) != (result.rejected is not None):
            self.fail("rejections", f"{ev} rejected: {result.rejected!r}; expected: {expected!r}")
        if result.rejected is not None:
            if result.own:
                self.fail("rejections", f"rejected event produced outputs {result.own}")
            return
        self.seen.add(ev.id)
        before = self.apply(ev)
        prediction = None
        if isinstance(ev, BuyerInquired) and before is None:
            prediction = self.predict(ev)
        for o in result.own:
            self.output(o, ev)
        if isinstance(ev, BuyerInquired):
            self.check_inquiry_outputs(ev, before, result.own)
            self.check_precedence(ev, prediction, result.own)
        went_offline = isinstance(ev, AgentStatusChanged) and ev.status is AgentStatus.OFFLINE
        if went_offline and self.load[getattr(ev, "agent_id", "")]:
            self.fail("online", f"{ev} but the agent kept its sessions")

    def apply(self, ev: InputEvent) -> Open | Entry | None:
        """Note an accepted event; for an inquiry, return the buyer's session or entry."""
        if isinstance(ev, AgentStatusChanged):
            if self.status[ev.agent_id] == "offline" and ev.status is not AgentStatus.OFFLINE:
                self.shift[ev.agent_id] = 0  # a shift starts (docs/routing.md, average)
            self.status[ev.agent_id] = ev.status.value
        if isinstance(ev, MessageSent) and (s := self.sessions.get(ev.buyer_id)):
            if ev.sender == "agent":
                s.last_agent_at = self.now
            self.set_waiting(s, ev.sender == "buyer")
        if not isinstance(ev, BuyerInquired):
            return None
        self.accepted.append(ev.id)
        self.priority[ev.id] = ev.priority
        return self.sessions.get(ev.buyer_id) or self.queued.get(ev.buyer_id)

    def set_waiting(self, s: Open, waiting: bool) -> None:
        self.pending[s.agent] += int(waiting) - int(s.buyer_waiting)
        s.buyer_waiting = waiting

    def at_end(self) -> None:
        """CONTRACT 6: every accepted inquiry is assigned, queued, left or expired."""
        for inquiry in self.accepted:
            root = self.joined.get(inquiry, inquiry)
            fate = self.fate.get(root)
            if fate not in {"assigned", "queued", "left", "expired"}:
                self.fail("fates", f"inquiry {inquiry} ended as {fate!r}")
            still_queued = any(e.inquiry_id == root for e in self.queued.values())
            if (fate == "queued") != still_queued:
                self.fail("fates", f"inquiry {inquiry} is {fate!r}; in a queue: {still_queued}")

    # ---------------------------------------------------------------------- outputs

    def output(self, o: OutputEvent, ev: InputEvent | None) -> None:
        self.log.append(f"  -> {o}")
        self.outputs.append(o)
        if not self.last_ts <= o.ts <= self.now:
            self.fail("timing", f"{o} decided at {o.ts}: after {self.last_ts}, by {self.now}")
        self.last_ts = o.ts
        if o.id in self.output_ids:
            self.fail("ids", f"output id {o.id} used twice:\n  {self.output_ids[o.id]}\n  {o}")
        self.output_ids[o.id] = o
        if self.awaiting is not None:
            self.expect(
                isinstance(o, Assignment) and o.reason is AssignReason.DEQUEUED,
                f"dequeued {self.awaiting} is not followed by its assignment",
            )
        if isinstance(o, Assignment):
            self.on_assignment(o, ev)
        elif isinstance(o, SessionClosed):
            self.on_closed(o, ev)
        elif isinstance(o, QueueUpdate):
            self.on_queue_update(o, ev)
        else:
            self.expect(False, f"the routing core emitted {o}")

    def on_assignment(self, a: Assignment, ev: InputEvent | None) -> None:
        if a.id != f"asg:{a.inquiry_id}":
            self.fail("ids", f"assignment id {a.id} does not name inquiry {a.inquiry_id}")
        if a.reason is AssignReason.ACTIVE_SESSION:
            self.on_active_session(a, ev)
            return
        entry = self.expect_cause(a, ev)
        self.expect(
            a.buyer_id not in self.sessions and a.buyer_id not in self.queued,
            f"{a.buyer_id} assigned while in a session or a queue",
        )
        self.expect(a.group in self.rules.groups, f"{a} names no configured group")
        assert a.group is not None
        first = self.assigned_to.setdefault(a.inquiry_id, a.agent_id)
        if first != a.agent_id:
            self.fail("one_agent", f"inquiry {a.inquiry_id} assigned to {first} and {a.agent_id}")
        if self.status[a.agent_id] != "online":
            self.fail("online", f"{a} while {a.agent_id} is {self.status[a.agent_id]}")
        if a.agent_id not in self.rules.groups[a.group].agents:
            self.fail("matching", f"{a}: {a.agent_id} is not listed in {a.group}")
        self.check_cap(a, ev)
        key = self.session_key(a, ev, entry)
        if a.reason in (AssignReason.ROUTED, AssignReason.DEQUEUED):
            self.check_candidate(a, key, ev)
            self.check_selection(a, key)
        elif a.mode is not None:
            self.fail("fields", f"{a} has a mode")
        waited = a.ts - entry.queued_at if entry else 0
        if a.waited_ms != waited:
            self.fail("fields", f"{a} waited {waited} ms")
        self.open_session(a, key)

    def session_key(self, a: Assignment, ev: InputEvent | None, entry: Entry | None) -> Key:
        """The candidate an assignment was decided in (docs/routing.md for transfers)."""
        if entry is not None:
            return entry.key
        if isinstance(ev, BuyerInquired):
            if a.reason is AssignReason.ROUTED:
                return self.rules.candidate_key(ev.context)
            return self.previous[a.buyer_id].key  # repeat entry, sticky
        assert isinstance(ev, SessionTransferred) and self.transferred is not None
        if ev.to_group is not None:
            return ev.to_group
        current = self.transferred.key
        if current != NO_MATCH and a.agent_id in self.rules.members(current):
            return current
        return next(g.name for g in self.config.groups if a.agent_id in g.agents)

    def on_active_session(self, a: Assignment, ev: InputEvent | None) -> None:
        s = self.sessions.get(a.buyer_id)
        self.expect(
            isinstance(ev, BuyerInquired) and ev.id == a.inquiry_id,
            "active_session outside its inquiry",
        )
        self.expect(s is not None and s.agent == a.agent_id, f"{a} but session is {s}")
        assert s is not None
        if (a.group, a.mode, a.waited_ms) != (s.group, None, 0):
            self.fail("fields", f"{a} for the session {s}")
        self.fate[a.inquiry_id] = "assigned"

    def expect_cause(self, a: Assignment, ev: InputEvent | None) -> Entry | None:
        """The event (or dequeue) an assignment answers; the entry for a dequeue."""
        if a.reason is AssignReason.DEQUEUED:
            entry, self.awaiting = self.awaiting, None
            self.expect(
                entry is not None and (entry.inquiry_id, entry.buyer) == (a.inquiry_id, a.buyer_id),
                f"{a} without its dequeue",
            )
            return entry
        if a.reason is AssignReason.TRANSFER:
            self.expect(
                isinstance(ev, SessionTransferred) and ev.id == a.inquiry_id,
                f"{a} outside its transfer",
            )
        else:
            self.expect(
                isinstance(ev, BuyerInquired) and ev.id == a.inquiry_id,
                f"{a} outside its inquiry",
            )
        return None

    def open_session(self, a: Assignment, key: Key) -> None:
        s = Open(a.inquiry_id, a.agent_id, a.group, key, last_agent_at=a.ts)
        self.sessions[a.buyer_id] = s
        if a.reason is AssignReason.TRANSFER:
            assert self.transferred is not None
            self.set_waiting(s, self.transferred.buyer_waiting)
        else:
            self.fate[a.inquiry_id] = "assigned"
        self.load[a.agent_id] += 1
        self.shift[a.agent_id] += 1
        self.last_assigned[a.agent_id] = a.ts

    def on_closed(self, c: SessionClosed, ev: InputEvent | None) -> None:
        s = self.sessions.pop(c.buyer_id, None)
        self.expect(s is not None and s.agent == c.agent_id, f"{c} but the session is {s}")
        assert s is not None
        if c.id != f"end:{s.inquiry_id}":
            self.fail("ids", f"{c.id} does not name the session's inquiry {s.inquiry_id}")
        if c.reason is CloseReason.TIMEOUT:
            self.expect(ev is None, f"{c} outside the timers")
            deadline = s.last_agent_at + self.config.queue.session_timeout
            if s.buyer_waiting or c.ts != deadline:
                self.fail("timing", f"{c} of {s}: the deadline was {deadline}")
        elif c.reason is CloseReason.AGENT_OFFLINE:
            self.expect(
                isinstance(ev, AgentStatusChanged)
                and ev.agent_id == c.agent_id
                and ev.status is AgentStatus.OFFLINE,
                f"{c} without the agent going offline",
            )
        else:
            self.expect(
                isinstance(ev, SessionTransferred) and ev.buyer_id == c.buyer_id,
                f"{c} outside a transfer of the buyer",
            )
            self.transferred = replace(s)
        self.set_waiting(s, False)
        self.load[c.agent_id] -= 1
        if c.reason is not CloseReason.TRANSFERRED:
            self.previous[c.buyer_id] = Ended(c.agent_id, s.key, c.ts)

    def on_queue_update(self, u: QueueUpdate, ev: InputEvent | None) -> None:
        inquiry, buyer = u.inquiry_id, u.buyer_id
        self.update_n[inquiry] += 1
        if u.id != f"q:{inquiry}:{self.update_n[inquiry]}":
            self.fail("ids", f"queue update {u.id} is not number {self.update_n[inquiry]}")
        if self.fate.get(inquiry) in TERMINAL:
            self.fail("fates", f"{u} after the inquiry was {self.fate[inquiry]}")
        told = u.status in (QueueStatus.QUEUED, QueueStatus.WAITING)
        estimate = u.estimated_wait_s
        if told != (u.position is not None and estimate is not None and estimate >= 0):
            self.fail("fields", f"{u}: position and estimate are for queued and waiting only")
        if u.status is QueueStatus.QUEUED:
            self.on_queued(u, ev)
            return
        entry = self.queued.get(buyer)
        self.expect(
            entry is not None and entry.inquiry_id == inquiry and entry.key == u.group,
            f"{u} but the buyer's entry is {entry}",
        )
        assert entry is not None
        if u.status is QueueStatus.WAITING:
            self.check_position(entry, u)
            entry.published, entry.stale_since = u.position or 0, None
            return
        if u.status is QueueStatus.LEFT:
            self.expect(isinstance(ev, BuyerLeft) and ev.buyer_id == buyer, f"{u} without leave")
        elif u.status is QueueStatus.EXPIRED:
            self.expect(ev is None, f"{u} outside the timers")
            self.check_expiry(entry, u)
            if u.group is not None and self.rules.groups[u.group].overflow_to is not None:
                self.fail("fates", f"{u} although {u.group} overflows")
        else:
            self.check_head_of_line(entry)
            self.awaiting = entry
        del self.queues[entry.key][inquiry]
        del self.queued[buyer]
        self.fate[inquiry] = u.status.value
        self.moved(entry.key, u.ts)

    def on_queued(self, u: QueueUpdate, ev: InputEvent | None) -> None:
        entry = self.queued.get(u.buyer_id)
        if entry is None:  # a new entry
            self.expect(
                isinstance(ev, BuyerInquired) and ev.id == u.inquiry_id,
                f"{u} outside its inquiry",
            )
            self.expect(u.buyer_id not in self.sessions, f"{u} for a buyer in a session")
            priority, arrival = self.priority[u.inquiry_id], next(self.arrivals)
            entry = Entry(u.inquiry_id, u.buyer_id, priority, arrival, u.group, u.ts, u.ts)
        else:  # overflow: same entry, same arrival, next group
            self.expect(ev is None and entry.inquiry_id == u.inquiry_id, f"{u} after {entry}")
            self.check_expiry(entry, u)
            source = entry.key
            target = None if source is None else self.rules.groups[source].overflow_to
            if target != u.group:
                self.fail("fates", f"{u}: {source} overflows to {target}")
            del self.queues[source][entry.inquiry_id]
            self.moved(source, u.ts)
            entry.key, entry.entered_at = u.group, u.ts
        self.queued[u.buyer_id] = entry
        self.queues.setdefault(entry.key, {})[entry.inquiry_id] = entry
        self.fate[u.inquiry_id] = "queued"
        self.check_position(entry, u)
        entry.published, entry.stale_since = u.position or 0, None
        self.moved(entry.key, u.ts)

    def moved(self, key: Key, ts: int) -> None:
        """Note when a queue change left a buyer's published position out of date."""
        for e in self.queues[key].values():
            if len(self.ahead_of(e)) + 1 == e.published:
                e.stale_since = None
            elif e.stale_since is None:
                e.stale_since = ts

    # ----------------------------------------------------------------- the invariants

    def check_cap(self, a: Assignment, ev: InputEvent | None) -> None:
        """CONTRACT 6 caps hold, except repeat entry to the previous agent, to_agent."""
        assert a.group is not None
        cap = self.rules.cap(a.agent_id, a.group)
        if cap is None:
            return
        previous = self.previous.get(a.buyer_id)
        if a.reason is AssignReason.REPEAT_ENTRY and previous and previous.agent == a.agent_id:
            return
        if isinstance(ev, SessionTransferred) and ev.to_agent is not None:
            return
        if self.load[a.agent_id] + 1 > cap:
            self.fail("caps", f"{a} takes {a.agent_id} to {self.load[a.agent_id] + 1} > cap {cap}")

    def ahead_of(self, entry: Entry) -> list[Entry]:
        return [e for e in self.queues[entry.key].values() if e.order < entry.order]

    def check_head_of_line(self, entry: Entry) -> None:
        """CONTRACT 3.1: a queue serves higher priority first, then earlier arrival."""
        if ahead := self.ahead_of(entry):
            self.fail("order", f"{entry} dequeued ahead of {ahead}")

    def check_position(self, entry: Entry, u: QueueUpdate) -> None:
        if u.position != len(self.ahead_of(entry)) + 1:
            self.fail("order", f"{u}: {len(self.ahead_of(entry))} buyers are ahead")

    def check_candidate(self, a: Assignment, key: Key, ev: InputEvent | None) -> None:
        """Chosen inside its candidate; a routed buyer passes nobody waiting there with
        equal or higher priority (CONTRACT 3.1)."""
        members = self.rules.members(key) if key != NO_MATCH else {}
        if members.get(a.agent_id) != a.group:
            self.fail("matching", f"{a} but the candidate is {key!r}: {members}")
        if not isinstance(ev, BuyerInquired) or a.reason is not AssignReason.ROUTED:
            return
        waiting = [e for e in self.queues.get(key, {}).values() if e.priority >= ev.priority]
        if waiting:
            self.fail("order", f"{a} overtakes {waiting} queued in {key!r}")

    def eligible(self, agent: str, group: str) -> bool:
        """CONTRACT 2: online, a member, below cap where queueing applies."""
        cap = self.rules.cap(agent, group)
        return self.status[agent] == "online" and (cap is None or self.load[agent] < cap)

    def check_selection(self, a: Assignment, key: Key) -> None:
        """CONTRACT 3 rule 5 for the modes whose choice the outputs determine."""
        if key == NO_MATCH:
            return
        pool = [x for x, g in self.rules.members(key).items() if self.eligible(x, g)]
        mode = self.rules.mode(key)
        if mode is Mode.CONVERSION and len(pool) <= self.config.conversion_min_agents:
            mode = Mode.EFFICIENCY
        if a.mode is not mode:
            self.fail("fields", f"{a} in {key!r} with {len(pool)} eligible: mode {mode}")
        if mode not in (Mode.AVERAGE, Mode.EFFICIENCY) or a.agent_id not in pool:
            return
        threshold = self.config.busy_threshold

        def rank(x: str) -> tuple[float, ...]:
            if mode is Mode.AVERAGE:
                return (self.shift[x], self.last_assigned[x])
            busy = self.pending[x] > threshold
            return (busy, self.load[x] / self.rules.agents[x].weight, self.last_assigned[x])

        best = min(pool, key=rank)
        if rank(a.agent_id) != rank(best):
            ranks = {x: rank(x) for x in pool}
            self.fail("selection", f"{a} but {mode} ranks {ranks}")

    def check_expiry(self, entry: Entry, u: QueueUpdate) -> None:
        max_wait = self.config.queue.max_wait
        if max_wait <= 0 or u.ts != entry.entered_at + max_wait:
            self.fail("timing", f"{u} of {entry}: max_wait is {max_wait} ms")

    def check_on_time(self) -> None:
        """CONTRACT 3.2 and 3.1: no session or queued buyer outlives its deadline."""
        q = self.config.queue
        for s in self.sessions.values():
            if not s.buyer_waiting and s.last_agent_at + q.session_timeout <= self.now:
                self.fail("timing", f"{s} is still open at {self.now}")
        for e in self.queued.values():
            if q.max_wait > 0 and e.entered_at + q.max_wait <= self.now:
                self.fail("timing", f"{e} is still queued at {self.now}")
            if e.stale_since is not None and e.stale_since + q.update_interval <= self.now:
                self.fail("updates", f"{e} has not been told its position by {self.now}")

    def refusal(self, ev: InputEvent) -> str | None:
        """Why the contract (and docs/routing.md) rejects `ev`, or None."""
        agent_id = getattr(ev, "agent_id", None)
        if agent_id is not None and agent_id not in self.rules.agents:
            return "unknown agent"
        if isinstance(ev, BuyerInquired):
            idle = ev.buyer_id not in self.sessions and ev.buyer_id not in self.queued
            if idle and self.predict(ev).key == NO_MATCH:  # rules 2-3 come before matching
                return "no group takes the inquiry"
        if isinstance(ev, SessionTransferred):
            return self.transfer_refusal(ev)
        return None

    def transfer_refusal(self, ev: SessionTransferred) -> str | None:
        s = self.sessions.get(ev.buyer_id)
        if s is None:
            return "no session"
        if ev.to_agent is not None:
            target = ev.to_agent
            problems = {
                "to_agent unknown or in no group": target not in self.rules.grouped,
                "to_agent is the current agent": target == s.agent,
                "to_agent not online": self.status.get(target) != "online",
            }
        else:
            group = self.rules.groups.get(ev.to_group or "")
            members = group.agents if group else ()
            problems = {
                "to_group unknown": group is None,
                "nobody in to_group can take the buyer": not any(
                    a != s.agent and self.eligible(a, ev.to_group or "") for a in members
                ),
            }
        return next((reason for reason, found in problems.items() if found), None)

    def check_inquiry_outputs(
        self, ev: BuyerInquired, before: Open | Entry | None, own: list[OutputEvent]
    ) -> None:
        """CONTRACT 3 rule 1: in a session → active_session; queued → stays queued."""
        shapes = [(type(o), getattr(o, "reason", None) or o.status, o.inquiry_id) for o in own]  # type: ignore[union-attr]
        if isinstance(before, Open):
            ok = shapes == [(Assignment, AssignReason.ACTIVE_SESSION, ev.id)]
        elif isinstance(before, Entry):
            ok = shapes == [(QueueUpdate, QueueStatus.WAITING, before.inquiry_id)]
            self.joined[ev.id] = before.inquiry_id
        else:
            ok = len(shapes) == 1 and shapes[0][1:] in {
                (AssignReason.ROUTED, ev.id),
                (AssignReason.STICKY, ev.id),
                (AssignReason.REPEAT_ENTRY, ev.id),
                (QueueStatus.QUEUED, ev.id),
            }
        if not ok:
            self.fail("fates", f"{ev} from a buyer with {before} produced {own}")

    def predict(self, ev: BuyerInquired) -> Expected:
        """CONTRACT 3 rules 2–6 and 3.5, in order, for a buyer with no session or queue."""
        last = self.previous.get(ev.buyer_id)
        repeat_window, sticky_window = (
            self.config.queue.repeat_entry_window,
            self.config.sticky_window,
        )
        since = self.now - last.ended_at if last else 0
        if last and last.key != NO_MATCH and repeat_window > 0 and since < repeat_window:
            members = self.rules.members(last.key)
            group = members.get(last.agent)
            caps = [self.rules.cap(a, g) for a, g in members.items()]
            queueing = self.rules.cap(last.agent, group) is not None if group else any(caps)
            if queueing:
                if group and self.status[last.agent] == "online":
                    return Expected(AssignReason.REPEAT_ENTRY, {last.agent}, last.key)
                # CONTRACT 3.5: another agent of the previous agent's group
                return self.route(group or last.key, AssignReason.REPEAT_ENTRY)
        if last and last.key != NO_MATCH and sticky_window > 0 and since < sticky_window:
            group = self.rules.members(last.key).get(last.agent)
            if group and self.eligible(last.agent, group):
                return Expected(AssignReason.STICKY, {last.agent}, last.key)
        return self.route(self.rules.candidate_key(ev.context), AssignReason.ROUTED)

    def route(self, key: Key, reason: AssignReason) -> Expected:
        """An eligible agent of the candidate, else its queue."""
        members = self.rules.members(key) if key != NO_MATCH else {}
        agents = {a for a, g in members.items() if self.eligible(a, g)}
        return Expected(reason if agents else QueueStatus.QUEUED, agents, key)

    def check_precedence(
        self, ev: BuyerInquired, expected: Expected | None, own: list[OutputEvent]
    ) -> None:
        if expected is None or len(own) != 1:
            return  # in a session or queued (or the output count is wrong: "fates")
        o = own[0]
        if isinstance(o, Assignment):
            got: tuple[object, ...] = (o.reason, o.agent_id in expected.agents)
        else:
            got = (getattr(o, "status", None), getattr(o, "group", None) == expected.key)
        if got != (expected.outcome, True):
            self.fail("precedence", f"{ev} produced {o}; expected {expected}")

    def check_not_stuck(self) -> None:
        """CONTRACT 3.1: nobody waits while an agent of the candidate is eligible."""
        if "stuck" not in self.checks:
            return
        for key, entries in self.queues.items():
            for agent, group in self.rules.members(key).items():
                if entries and self.eligible(agent, group):
                    self.fail("stuck", f"{agent} is eligible while {list(entries)} wait in {key}")
        if self.engine is None:
            return
        shop = self.engine.shop(SHOP)
        engine_queues: dict[Key, list[str]] = {}
        for cand in shop.all_candidates():
            if cand.queue:
                engine_queues[cand.group] = [item[3] for item in cand.queue]
                idle = [a for a in cand.caps if cand.is_eligible(shop.agents[a])]
                if idle:
                    self.fail("stuck", f"engine: {idle} eligible while {cand.key!r} has a queue")
        mine = {
            key: [e.buyer for e in sorted(entries.values(), key=lambda e: e.order)]
            for key, entries in self.queues.items()
            if entries
        }
        if mine != engine_queues:
            self.fail("stuck", f"queues per the outputs {mine} != the engine's {engine_queues}")


def observe(case: Case, *checks: str) -> Observer:
    """Run a case through a fresh engine under an observer making `checks`."""
    driver = Driver(case.config)
    observer = Observer(case.config, set(checks), driver.engine)
    for step in case.steps:
        observer.on_step(driver.run(step))
    observer.at_end()
    return observer


# --------------------------------------------------------------------------------- tests


@PROPERTY
@given(cases())
def test_an_inquiry_is_never_assigned_to_two_agents(case: Case) -> None:
    observe(case, "one_agent")


@PROPERTY
@given(cases())
def test_caps_hold_except_repeat_entry_to_the_previous_agent_and_named_transfers(
    case: Case,
) -> None:
    """The cap is the agent's, else its group's, else `queue.default_cap`, for the group
    the assignment names, and only where queueing applies to that group."""
    observe(case, "caps")


@PROPERTY
@given(cases())
def test_no_queued_buyer_is_overtaken_in_its_queue(case: Case) -> None:
    """A dequeue takes the head of its line (higher priority, then earlier arrival, which
    overflow keeps); positions agree with that order; a routed buyer passes nobody of equal
    or higher priority waiting in its candidate."""
    observe(case, "order")


@PROPERTY
@given(cases())
def test_assignments_go_to_a_member_of_the_matched_candidate(case: Case) -> None:
    observe(case, "matching")


BUSY_BEFORE_LOAD = Case(  # random steps rarely make a busy agent the lightest loaded one
    shop={
        "id": SHOP,
        "busy_threshold": 0,
        "agents": [{"id": "a1", "weight": 2.0}, {"id": "a2"}],
        "groups": [{"name": "g", "agents": ["a1", "a2"]}],
    },
    steps=(
        Step(0, Status("a1", "online")),
        Step(0, Status("a2", "online")),
        Step(1000, Inquiry("b1")),  # a1 (tie, file order): load / weight 0.5
        Step(1000, Inquiry("b2")),  # a2: load / weight 1.0
        Step(1000, BuyerSays("b1")),  # a1 owes a reply: busy
        Step(1000, Inquiry("b3")),  # a2, not busy, despite its higher load / weight
    ),
)


@PROPERTY
@example(BUSY_BEFORE_LOAD)
@given(cases())
def test_average_and_efficiency_modes_pick_the_agent_the_contract_ranks_first(
    case: Case,
) -> None:
    """average: fewest assignments this shift, then longest since the last; efficiency:
    not busy, lowest load / weight, then longest since the last assignment."""
    observe(case, "selection")


@PROPERTY
@given(cases())
def test_assignments_carry_the_mode_group_and_wait_the_contract_describes(case: Case) -> None:
    observe(case, "fields")


@PROPERTY
@given(cases())
def test_inquiries_follow_the_rule_order_repeat_entry_sticky_then_matching(case: Case) -> None:
    """For a buyer with no session and no queue entry: repeat entry (previous agent if
    online, else the previous group respecting caps, else its queue), then sticky, then
    the matched candidate, else its queue."""
    observe(case, "precedence")


@PROPERTY
@given(cases())
def test_suspended_and_offline_agents_receive_no_new_buyer(case: Case) -> None:
    """...and an agent that goes offline keeps no session."""
    observe(case, "online")


@PROPERTY
@given(cases())
def test_every_accepted_inquiry_ends_assigned_queued_left_or_expired(case: Case) -> None:
    """Including: a buyer in a session gets `active_session`, a queued buyer's new inquiry
    joins its entry (one `waiting` update), and nothing happens after a final state."""
    observe(case, "fates")


@PROPERTY
@given(cases())
def test_invalid_events_are_rejected_without_outputs_and_duplicates_ignored(case: Case) -> None:
    observe(case, "rejections")


@PROPERTY
@given(cases())
def test_no_buyer_waits_while_an_agent_of_its_candidate_is_eligible(case: Case) -> None:
    observe(case, "stuck")


@PROPERTY
@given(cases())
def test_sessions_time_out_and_queued_buyers_expire_at_their_deadlines(case: Case) -> None:
    observe(case, "timing")


@PROPERTY
@given(cases())
def test_a_changed_queue_position_is_published_within_update_interval(case: Case) -> None:
    observe(case, "updates")


@PROPERTY
@given(cases())
def test_output_ids_are_deterministic_and_never_reused(case: Case) -> None:
    first = observe(case, "ids").outputs
    assert observe(case).outputs == first


@PROPERTY
@given(cases())
def test_handle_fires_due_timers_before_the_event(case: Case) -> None:
    """`handle(e, now)` gives what `on_timer(now)` then `handle(e, now)` give together."""
    config = case.config
    split, joined = Driver(config, fire_first=True), Driver(config, fire_first=False)
    for step in case.steps:
        a, b = split.run(step), joined.run(step)
        assert (a.outputs, a.rejected) == (b.outputs, b.rejected), step


@PROPERTY
@given(cases(), st.data())
def test_snapshot_restore_continues_exactly_like_the_uninterrupted_run(
    case: Case, data: st.DataObject
) -> None:
    """Snapshots go through orjson; restoring one and snapshotting again gives it back."""
    n = len(case.steps)
    restarts = data.draw(st.sets(st.integers(0, n), max_size=3), label="restart before steps")
    fire_first = data.draw(st.booleans(), label="fire_first")
    config = case.config
    straight = Driver(config, fire_first=fire_first)
    restarted = Driver(config, fire_first=fire_first)
    for i, step in enumerate([*case.steps, None]):
        if i in restarts:
            taken = restarted.snapshot()
            restarted.restart()
            assert restarted.snapshot() == taken, f"restore is not a fixed point before step {i}"
        if step is None:
            break
        a, b = straight.run(step), restarted.run(step)
        assert (b.outputs, b.rejected) == (a.outputs, a.rejected), f"step {i}: {step}"
    assert restarted.engine.next_deadline() == straight.engine.next_deadline()
    assert restarted.snapshot() == straight.snapshot()
