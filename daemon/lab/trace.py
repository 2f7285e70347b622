"""What one simulated run records: the interface between the runner, the measures, the
report and `fenliu explain`.

Times are virtual epoch milliseconds. A trace holds facts only (what happened when, what
the engine announced); every figure is computed from it by `daemon.lab.measures`, so the
same trace can be measured again, and the baseline estimators see exactly the history the
engine saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class InquiryRecord:
    """One inquiry (a buyer clicking "contact us") and how it ended."""

    inquiry_id: str
    buyer_id: str
    arrived: int  # when the inquiry was sent
    group: str | None  # the group the buyer's context was drawn for (None: unmatched)
    priority: int = 0
    intent: float = 0.0  # the buyer's purchase intent in [0, 1] (drives the order draw)
    # the first queue_update `queued` the engine published, if the buyer had to wait:
    queued_at: int | None = None
    queue_group: str | None = None  # group of that queue (None: the shop-wide pool)
    queue_position: int | None = None  # position announced on entering the queue
    estimate_s: int | None = None  # Fenliu's estimate announced on entering the queue
    # the assignment, if served:
    served_at: int | None = None
    agent_id: str | None = None
    reason: str | None = None  # assignment.reason
    mode: str | None = None  # assignment.mode (None for sticky, repeat entry, ...)
    served_group: str | None = None  # assignment.group
    # or how it ended without service:
    left_at: int | None = None  # the buyer gave up waiting (leave)
    expired_at: int | None = None  # max_wait passed (queue_update `expired`)
    rejected: str | None = None  # dead-letter reason (e.g. no group matched)
    # what happened after service:
    session_ended: int | None = None
    ordered: bool = False
    order_amount: float = 0.0
    # replies (contract §3.6), as the buyer waits for them: the buyer writes, then waits for
    # the agent's next message, so every message but the last is answered.
    replies_ms: list[int] = field(default_factory=list)  # the wait for each reply, in order
    unanswered_ms: int | None = None  # a message owed when the session (or the run) ended
    ignored: bool = False  # the world: the agent never answers the session's first message
    gave_up_at: int | None = None  # the buyer stopped waiting for a reply and left
    # moves to another agent while in session, (ts, from agent, to agent, assignment.reason)
    # (`unanswered`, `transfer`); agent_id is then the last agent:
    moves: list[tuple[int, str | None, str, str]] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """served, left, expired, rejected, or waiting (still queued at the end)."""
        if self.served_at is not None:
            return "served"
        if self.left_at is not None:
            return "left"
        if self.expired_at is not None:
            return "expired"
        if self.rejected is not None:
            return "rejected"
        return "waiting"

    @property
    def wait_ms(self) -> int | None:
        """Time from arrival to service (None if not served)."""
        return None if self.served_at is None else self.served_at - self.arrived

    @property
    def reply_waits_ms(self) -> list[int]:
        """Every wait for a reply: the answered ones, then the one still owed, if any."""
        owed = [] if self.unanswered_ms is None else [self.unanswered_ms]
        return [*self.replies_ms, *owed]


@dataclass(slots=True)
class AgentRecord:
    """One agent over the run."""

    agent_id: str
    groups: list[str]
    true_conversion: float  # the simulated agent's real conversion rate
    online: list[tuple[int, int]] = field(default_factory=list)  # [start, end) intervals

    @property
    def online_ms(self) -> int:
        """Total time online."""
        return sum(end - start for start, end in self.online)


@dataclass(slots=True)
class QueueSample:
    """Queue length (buyers waiting, all queues of the shop) at a moment."""

    at: int
    waiting: int


@dataclass(slots=True)
class Trace:
    """Everything one run of one policy recorded."""

    policy: str
    scenario: str
    seed: int
    start: int  # virtual time of the run's start
    end: int  # virtual time of the run's end
    caps: dict[str, int | None]  # agent -> its effective cap (None: uncapped)
    deadline_ms: int = 180_000  # the shop's [replies] deadline: a later reply is late
    ignored_first: float = 0.0  # the world's share of first messages nobody answers
    inquiries: list[InquiryRecord] = field(default_factory=list)
    agents: dict[str, AgentRecord] = field(default_factory=dict)
    queue: list[QueueSample] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain data (for tests and debugging; the report uses the measures)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """One policy's run as the report needs it."""

    trace: Trace
    measures: dict[str, Any]
    explain: dict[str, Any]
    estimates: Sequence[tuple[float, float, float, float]]  # real, fenliu, asterisk, rocket (s)
    grey: dict[str, Any] | None = None  # a grey test's figures and truth (daemon.lab.grey)
