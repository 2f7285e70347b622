"""The observer of `tests/core/test_engine_properties.py`: the world as the outputs describe it.

`Observer` rebuilds agent statuses, open sessions, loads and pending replies (with their
reply clocks and when a first message is due to move), queues, the fate of every inquiry,
every reply time and who left which buyer unanswered from the outputs, the input events and
the shop file alone, and makes the checks of `tests/engine_checks.py` as the outputs stream
past.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from daemon.core.config import ShopConfig
from daemon.core.engine import Engine
from tests.engine_checks import Checks, known_checks
from tests.engine_model import (
    NO_MATCH,
    OPENING,
    TERMINAL,
    Ended,
    Entry,
    Key,
    Moving,
    Open,
    Rules,
    Silent,
    StepResult,
)
from tests.strategies import T0
from topics.events import (
    AgentStatus,
    AgentStatusChanged,
    Assignment,
    AssignReason,
    BuyerInquired,
    BuyerLeft,
    CloseReason,
    InputEvent,
    MessageSent,
    OutputEvent,
    QueueStatus,
    QueueUpdate,
    SessionClosed,
    SessionTransferred,
)


@dataclass
class Observer(Checks):
    """The world as the outputs describe it; see `tests/core/test_engine_properties.py`.

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
    replied: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # group -> (at, ms)
    shift: Counter[str] = field(default_factory=Counter)  # assignments since shift start
    last_assigned: Counter[str] = field(default_factory=Counter)
    previous: dict[str, Ended] = field(default_factory=dict)  # buyer -> last ended session
    transferred: Open | None = None  # the session a transfer is moving
    moving: Moving | None = None  # closed `unanswered`: its move's assignment comes next
    silent: dict[str, Silent] = field(default_factory=dict)  # buyer -> who left it unanswered
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
    arm_counts: dict[str, Counter[str]] = field(default_factory=dict)  # contract §3.7
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        known_checks(self.checks)
        self.rules = Rules(self.config)
        self.status = {a.id: "offline" for a in self.config.agents}
        for agent in self.config.agents:
            self.last_assigned[agent.id] = -1

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
        if self.moving is not None:
            self.fail("moves", f"{self.moving} was closed unanswered and never moved")
            self.moving = None
        self.check_on_time()
        self.check_not_stuck()
        self.check_agent_indexes()
        self.check_replies()
        self.check_stranded()
        self.check_remembered()
        self.check_arm_counts()

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
                s.last_agent_at, s.answered = self.now, True
                if s.buyer_waiting and s.group is not None:  # a reply (contract §3.6)
                    reply = (self.now, self.now - s.owed_since)
                    self.replied.setdefault(s.group, []).append(reply)
                if s.buyer_waiting:
                    in_time = self.now - s.owed_since <= self.config.replies.deadline
                    self.count_arm(ev.buyer_id, replies=1, in_time=int(in_time))
            self.set_waiting(s, ev.sender == "buyer")
        if not isinstance(ev, BuyerInquired):
            return None
        self.accepted.append(ev.id)
        self.priority[ev.id] = ev.priority
        return self.sessions.get(ev.buyer_id) or self.queued.get(ev.buyer_id)

    def count_arm(self, buyer: str, **counts: int) -> None:
        """Count for the buyer's arm (contract §3.7), if the shop runs a grey test."""
        arm = self.rules.arm(buyer)
        if arm is not None:
            self.arm_counts.setdefault(arm, Counter()).update(counts)

    def set_waiting(self, s: Open, waiting: bool) -> None:
        self.pending[s.agent] += int(waiting) - int(s.buyer_waiting)
        if waiting and not s.buyer_waiting:  # the reply clock starts
            s.owed_since = self.now
        s.buyer_waiting = waiting

    def at_end(self) -> None:
        """contract §6: every accepted inquiry is assigned, queued, left or expired."""
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
        moving = self.moving
        if moving is not None and not (
            isinstance(o, Assignment)
            and o.reason is AssignReason.UNANSWERED
            and o.buyer_id == moving.buyer
        ):  # contract §3.6: never dropped, never queued again for this
            self.fail("moves", f"{moving} closed unanswered is not followed by its move: {o}")
            self.moving = None
        if isinstance(o, Assignment | QueueUpdate):
            self.check_arm_fields(o)
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
        moving, self.moving = self.moving, None
        if a.reason is AssignReason.UNANSWERED:  # a move stays in its session's candidate
            key = moving.session.key if moving else NO_MATCH
        else:
            key = self.session_key(a, ev, entry)
        self.check_decision(a, key, ev, moving)
        waited = a.ts - entry.queued_at if entry else 0
        if a.waited_ms != waited:
            self.fail("fields", f"{a} waited {waited} ms")
        if a.reason in OPENING:  # contract §3.7: a session of the arm; from the line, the
            came = int(a.reason is not AssignReason.DEQUEUED)  # buyer came when it queued
            self.count_arm(a.buyer_id, sessions=1, buyers=came)
        self.open_session(a, key, moving)

    def session_key(self, a: Assignment, ev: InputEvent | None, entry: Entry | None) -> Key:
        """The candidate an assignment was decided in (docs/routing.md for transfers)."""
        if entry is not None:
            return entry.key
        if isinstance(ev, BuyerInquired):
            if a.reason is AssignReason.ROUTED:
                return self.rules.candidate_key(ev.context)
            last = self.previous[a.buyer_id]
            moved = a.reason is AssignReason.REPEAT_ENTRY and a.agent_id != last.agent
            # sticky, repeat entry to the previous agent, or (contract §3.5) to another agent
            # of the previous agent's own group
            return (self.rules.members(last.key).get(last.agent) if moved else None) or last.key
        assert isinstance(ev, SessionTransferred) and self.transferred is not None
        if ev.to_group is not None:
            return ev.to_group
        current = self.transferred.key
        if current != NO_MATCH and a.agent_id in self.rules.members(current):
            return current
        return next(g.name for g in self.config.groups if a.agent_id in g.agents)

    def check_decision(
        self, a: Assignment, key: Key, ev: InputEvent | None, moving: Moving | None
    ) -> None:
        """The checks of how an assignment was decided, by its reason."""
        if a.reason is AssignReason.UNANSWERED and moving is not None:
            self.check_move(a, moving)
            self.check_candidate(a, key, ev)
            self.check_selection(a, key, moving.eligible, exclude=moving.session.agent)
        elif a.reason in (AssignReason.ROUTED, AssignReason.DEQUEUED):
            self.check_candidate(a, key, ev)
            self.check_selection(a, key)
            if a.reason is AssignReason.DEQUEUED:
                self.check_moves_first(a, key)
        elif a.mode is not None:
            self.fail("fields", f"{a} has a mode")
        if a.reason in (AssignReason.STICKY, AssignReason.REPEAT_ENTRY):
            self.check_no_way_back(a)

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
        elif a.reason is AssignReason.UNANSWERED:
            if self.moving is None:
                self.fail("moves", f"{a} without the buyer's session closed unanswered")
        else:
            self.expect(
                isinstance(ev, BuyerInquired) and ev.id == a.inquiry_id,
                f"{a} outside its inquiry",
            )
        return None

    def open_session(self, a: Assignment, key: Key, moving: Moving | None) -> None:
        s = Open(a.inquiry_id, a.agent_id, a.group, key, a.ts, last_agent_at=a.ts)
        self.sessions[a.buyer_id] = s
        handed = self.transferred if a.reason is AssignReason.TRANSFER else None
        if a.reason is AssignReason.UNANSWERED and moving is not None:
            handed, s.moved = moving.session, True
        if handed is not None:  # a transfer or a move: the question and its clock move along
            self.set_waiting(s, handed.buyer_waiting)
            s.owed_since = handed.owed_since  # its start kept
        elif a.reason is not AssignReason.UNANSWERED:
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
        elif c.reason is CloseReason.UNANSWERED:
            self.check_move_due(s, c)
            eligible = [x for x, g in self.rules.members(s.key).items() if self.eligible(x, g)]
            self.moving = Moving(c.buyer_id, replace(s), eligible)
        else:
            self.expect(
                isinstance(ev, SessionTransferred) and ev.buyer_id == c.buyer_id,
                f"{c} outside a transfer of the buyer",
            )
            self.transferred = replace(s)
        due = s.move_due(self.config.replies.reassign_after)
        stranded = c.reason is CloseReason.AGENT_OFFLINE and due is not None and due <= c.ts
        self.set_waiting(s, False)
        self.load[c.agent_id] -= 1
        if c.reason is CloseReason.UNANSWERED or stranded:
            # contract §3.6: no way back to the agent who did not answer: its session is no
            # contact, and an earlier contact with it is forgotten
            self.silent[c.buyer_id] = Silent(c.agent_id, c.ts)
            if (last := self.previous.get(c.buyer_id)) and last.agent == c.agent_id:
                del self.previous[c.buyer_id]
        elif c.reason is not CloseReason.TRANSFERRED:
            self.previous[c.buyer_id] = Ended(c.agent_id, s.key, c.ts)
            if (silent := self.silent.get(c.buyer_id)) and silent.agent == c.agent_id:
                del self.silent[c.buyer_id]  # an answered contact with it since

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
            aging = self.config.queue.priority_aging
            entry = Entry(u.inquiry_id, u.buyer_id, priority, arrival, u.group, u.ts, u.ts, aging)
            self.count_arm(u.buyer_id, buyers=1)
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
