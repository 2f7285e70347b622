"""Mutable routing state of one shop: agents, buyers, sessions, queue entries.

State changes are data, as in h11's transition tables: `AGENT_TRANSITIONS` says what each
status change does, `BUYER_TRANSITIONS` which buyer phase follows which trigger. Anything
not in `BUYER_TRANSITIONS` is an impossible transition and raises `ImpossibleTransition`
naming the state and the trigger — a bug in the engine, never a consequence of bad input
(bad input raises `EventRejected` before any state changes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from daemon.core.errors import ImpossibleTransition
from topics.events import AgentStatus, AssignReason, InquiryContext, Mode

# ------------------------------------------------------------------------------- agents


@dataclass(frozen=True, slots=True)
class AgentTransition:
    """What an agent status change does besides recording the new status."""

    closes_sessions: bool  # open sessions end with reason agent_offline
    starts_shift: bool  # `average` mode counts assignments per shift
    may_free_capacity: bool  # queued buyers may now be served


_ON, _SUS, _OFF = AgentStatus.ONLINE, AgentStatus.SUSPENDED, AgentStatus.OFFLINE

AGENT_TRANSITIONS: dict[tuple[AgentStatus, AgentStatus], AgentTransition] = {
    (_OFF, _ON): AgentTransition(closes_sessions=False, starts_shift=True, may_free_capacity=True),
    (_SUS, _ON): AgentTransition(closes_sessions=False, starts_shift=False, may_free_capacity=True),
    (_ON, _SUS): AgentTransition(
        closes_sessions=False, starts_shift=False, may_free_capacity=False
    ),
    (_OFF, _SUS): AgentTransition(
        closes_sessions=False, starts_shift=True, may_free_capacity=False
    ),
    (_ON, _OFF): AgentTransition(closes_sessions=True, starts_shift=False, may_free_capacity=False),
    (_SUS, _OFF): AgentTransition(
        closes_sessions=True, starts_shift=False, may_free_capacity=False
    ),
}
"""Every real status change. A repeated status (online → online) changes nothing."""


@dataclass(slots=True)
class AgentState:
    """One agent's live state. `ordinal` is its place in the shop file (final tie-break)."""

    id: str
    ordinal: int
    status: AgentStatus = AgentStatus.OFFLINE
    sessions: dict[str, None] = field(default_factory=dict)  # buyer ids, ordered set
    pending: int = 0  # sessions whose last message came from the buyer
    overdue: int = 0  # of those, the ones whose reply clock passed the deadline (§3.6)
    busy: bool = False  # as `Sessions.update_busy` decides (contract §3.4): ranks read it
    # buyer id -> last_agent_at of the other sessions, oldest first (the shop's clock only
    # moves forward, so a session re-inserted at each agent message keeps the order): when
    # each will time out. An index for the wait estimate, derived from the sessions.
    quiet: dict[str, int] = field(default_factory=dict)
    shift_assignments: int = 0
    last_assigned_at: int = -1
    online_since: int | None = None
    online_ms: int = 0
    sessions_total: int = 0  # sessions ever started (conversion denominator)
    converted_sessions: int = 0
    orders: int = 0
    order_amount: float = 0.0
    external_rate: float | None = None  # latest agent_stats figure
    assigned_by_reason: dict[str, int] = field(default_factory=dict)
    assigned_while_busy: int = 0
    # what `fenliu explain` reads: sessions by rule ("routed/efficiency", "sticky", ...)
    # and by the group the agent was chosen in ("" when no group applied)
    assigned_by_rule: dict[str, int] = field(default_factory=dict)
    assigned_by_group: dict[str, int] = field(default_factory=dict)
    # when it usually comes online (daemon/core/arrivals.py): decayed shift starts and ends
    # by time-of-week bin, as of `profile_at`; its first status change; its last going
    # offline; its breaks: when the current one began, their mean length
    arrivals: dict[int, float] = field(default_factory=dict)
    departures: dict[int, float] = field(default_factory=dict)
    profile_at: int = 0
    observed_since: int = -1
    offline_at: int = -1
    suspended_at: int = -1
    pause_ms: float = 0.0
    taken_unanswered: int = 0  # buyers moved away from it for a first message it left unanswered
    kept: dict[str, Any] | None = None  # fields of its row a newer Fenliu wrote (snapshot.py)

    @property
    def load(self) -> int:
        """Open sessions."""
        return len(self.sessions)

    def count_assignment(
        self,
        reason: AssignReason,
        now: int,
        *,
        busy: bool,
        mode: Mode | None = None,
        group: str | None = None,
    ) -> None:
        """Book one more session for this agent, with the rule, mode and group that made it."""
        self.shift_assignments += 1
        self.sessions_total += 1
        self.last_assigned_at = now
        self.assigned_by_reason[reason.value] = self.assigned_by_reason.get(reason.value, 0) + 1
        rule = rule_key(reason.value, mode)
        self.assigned_by_rule[rule] = self.assigned_by_rule.get(rule, 0) + 1
        where = group or ""
        self.assigned_by_group[where] = self.assigned_by_group.get(where, 0) + 1
        if busy:
            self.assigned_while_busy += 1


def rule_key(reason: str, mode: Mode | None) -> str:
    """How `assigned_by_rule` names a rule: the reason, with the mode when one was used."""
    return reason if mode is None else f"{reason}/{mode.value}"


# ------------------------------------------------------------------------------- buyers


class BuyerPhase(StrEnum):
    """Where a buyer stands with the shop."""

    IDLE = "idle"  # no session, not queued (maybe a recent contact)
    QUEUED = "queued"
    IN_SESSION = "in_session"


Trigger = Literal["route", "queue", "dequeue", "leave", "expire", "overflow", "close", "transfer"]

BUYER_TRANSITIONS: dict[tuple[BuyerPhase, Trigger], BuyerPhase] = {
    (BuyerPhase.IDLE, "route"): BuyerPhase.IN_SESSION,
    (BuyerPhase.IDLE, "queue"): BuyerPhase.QUEUED,
    (BuyerPhase.QUEUED, "dequeue"): BuyerPhase.IN_SESSION,
    (BuyerPhase.QUEUED, "leave"): BuyerPhase.IDLE,
    (BuyerPhase.QUEUED, "expire"): BuyerPhase.IDLE,
    (BuyerPhase.QUEUED, "overflow"): BuyerPhase.QUEUED,
    (BuyerPhase.IN_SESSION, "close"): BuyerPhase.IDLE,
    (BuyerPhase.IN_SESSION, "transfer"): BuyerPhase.IN_SESSION,
}


@dataclass(slots=True)
class Session:
    """A buyer with an agent, from `assignment` to `session_closed`."""

    inquiry_id: str  # the inquiry (or transfer) that opened it
    agent_id: str
    cand: str  # key of the candidate the agent was chosen in
    group: str | None
    started_at: int
    last_agent_at: int  # an assignment counts as the agent's greeting
    buyer_waiting: bool = False  # the buyer wrote last: the agent owes a reply
    converted: bool = False
    # the reply clock (contract §3.6): when it started, while the buyer waits (its first
    # message since the agent's last; a transfer keeps it), and whether the agent of this
    # session has written in it yet. Stored under the buyer row's "reply" key (snapshot.py)
    waiting_since: int = 0
    answered: bool = False
    overdue: bool = False  # the clock passed the deadline (derived: Sessions.recount)
    moved: bool = False  # opened by a move for an unanswered message: no second move (§3.6)
    # when the inquiry that began this chat opened its first session (a transfer or a move
    # keeps it): a grey test counts an order only for a chat it counted (§3.7)
    opened_at: int = 0


@dataclass(slots=True)
class QueueEntry:
    """A buyer waiting in a candidate's queue."""

    inquiry_id: str
    cand: str
    priority: int
    arrival: int  # ordering time; kept when overflowing to another group
    seq: int  # arrival tie-break, unique per shop
    entered_at: int  # when it entered this queue (max_wait counts from here)
    context: InquiryContext
    updates: int = 0  # queue_update events published so far (the n of "q:<id>:<n>")
    last_position: int = 0
    last_estimate: int = -1
    last_eta: int = 0  # when the last announced estimate said service would come (ms)

    def item(self, buyer_id: str, aging: int) -> QueueItem:
        """The entry's place in its candidate's line (the line's order: `QueueItem`), with
        the shop's `queue.priority_aging` in ms (0: off)."""
        rank = self.arrival - self.priority * aging if aging else -self.priority
        return QueueItem(rank, self.arrival, self.seq, buyer_id)


class QueueItem(NamedTuple):
    """A buyer in a candidate's line (`daemon/core/line.py`), which keeps these sorted: higher
    effective priority first, then earlier arrival, then the shop's arrival counter. `seq`
    is unique per shop, so the buyer id never decides; `QueueEntry.item` is the one place an
    item is made.

    The effective priority is the priority plus 1 for every `priority_aging` waited
    (contract §3.1): priority + (now − arrival) ÷ aging. `now` is the same for every buyer,
    so the higher it is, the lower arrival − priority × aging: that is `rank`, fixed while
    the buyer waits, and the line never needs sorting again as time passes. Without aging
    `rank` is −priority."""

    rank: int  # arrival − priority × aging (ms); without aging −priority: the lower, the earlier
    arrival: int  # epoch ms; kept when the buyer overflows to another group
    seq: int  # the arrival tie-break (`QueueEntry.seq`)
    buyer_id: str


@dataclass(slots=True)
class LastContact:
    """The buyer's most recent ended session: for sticky, repeat entry, order credit."""

    agent_id: str
    cand: str
    ended_at: int
    converted: bool
    opened_at: int = -1  # Session.opened_at; -1: not known (a row written before it was kept)


@dataclass(slots=True)
class Buyer:
    """Everything the shop remembers about one buyer."""

    id: str
    phase: BuyerPhase = BuyerPhase.IDLE
    session: Session | None = None
    queued: QueueEntry | None = None
    last: LastContact | None = None
    # the agent who left its first message unanswered, and when (contract §3.6): repeat
    # entry's fallback does not lead back to it within sticky_window; an answered contact
    # with that agent since clears it
    silent: tuple[str, int] | None = None
    kept: dict[str, Any] | None = None  # fields of its row a newer Fenliu wrote (snapshot.py)

    def move(self, trigger: Trigger) -> None:
        """Apply a transition from `BUYER_TRANSITIONS`, or raise `ImpossibleTransition`."""
        nxt = BUYER_TRANSITIONS.get((self.phase, trigger))
        if nxt is None:
            raise ImpossibleTransition(f"buyer {self.id!r} is {self.phase.value}; cannot {trigger}")
        self.phase = nxt


# ------------------------------------------------------------------------------ changes


@dataclass(slots=True)
class Changes:
    """What changed in a shop since the last checkpoint (only kept when the shop tracks).

    Over-marking is harmless (an unchanged row is written again); a change that is not
    marked would be lost on restore, which the property tests check.
    """

    buyers: set[str] = field(default_factory=set)  # changed or deleted buyer ids
    agents: set[str] = field(default_factory=set)  # changed or deleted agent ids
    seen: list[str] = field(default_factory=list)  # event ids remembered since, in order
    other: bool = False  # counters, clock or candidate state changed

    def __bool__(self) -> bool:
        return bool(self.buyers or self.agents or self.seen or self.other)
