"""Typed events of the Kafka contract (docs/contract.md §1).

Input events are facts in the past tense, produced by chat front ends; output events are
the daemon's decisions. All are frozen, slotted dataclasses: cheap to build on the hot
path, hashable, and impossible to change by accident once decoded. JSON encoding and
decoding live in `topics.codec`; nothing here knows about bytes.

Field names follow the JSON keys, except `MessageSent.sender`, which is `from` on the wire
(a Python keyword).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class AgentStatus(StrEnum):
    """Reception state of an agent (contract §1.2 `agent_status`)."""

    ONLINE = "online"
    SUSPENDED = "suspended"
    OFFLINE = "offline"


class Mode(StrEnum):
    """Selection mode inside a candidate group (contract §3, rule 5)."""

    AVERAGE = "average"
    WEIGHTED = "weighted"
    EFFICIENCY = "efficiency"
    CONVERSION = "conversion"


class AssignReason(StrEnum):
    """Why a buyer was given to an agent (contract §1.3 `assignment.reason`)."""

    ACTIVE_SESSION = "active_session"
    REPEAT_ENTRY = "repeat_entry"
    STICKY = "sticky"
    ROUTED = "routed"
    DEQUEUED = "dequeued"
    TRANSFER = "transfer"
    UNANSWERED = "unanswered"


class CloseReason(StrEnum):
    """Why a session ended (contract §1.3 `session_closed.reason`)."""

    TIMEOUT = "timeout"
    AGENT_OFFLINE = "agent_offline"
    TRANSFERRED = "transferred"
    UNANSWERED = "unanswered"


class QueueStatus(StrEnum):
    """What happened to a queued buyer (contract §1.3 `queue_update.status`)."""

    QUEUED = "queued"
    WAITING = "waiting"
    LEFT = "left"
    EXPIRED = "expired"
    DEQUEUED = "dequeued"


# --------------------------------------------------------------------------- input events


@dataclass(frozen=True, slots=True)
class InquiryContext:
    """What the front end knows about an inquiring buyer; every part optional."""

    crowd: tuple[str, ...] = ()
    item_id: str | None = None
    intent: str | None = None
    order_status: str | None = None


@dataclass(frozen=True, slots=True)
class BuyerInquired:
    """`inquiry`: a buyer opened a chat with the shop ("contact customer service")."""

    id: str
    shop_id: str
    ts: int
    buyer_id: str
    context: InquiryContext = field(default_factory=InquiryContext)
    priority: int = 0


@dataclass(frozen=True, slots=True)
class BuyerLeft:
    """`leave`: the buyer gave up waiting (closed the window)."""

    id: str
    shop_id: str
    ts: int
    buyer_id: str


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    """`order`: the buyer placed an order."""

    id: str
    shop_id: str
    ts: int
    buyer_id: str
    amount: float | None = None


@dataclass(frozen=True, slots=True)
class SessionTransferred:
    """`transfer`: an agent handed the buyer to another agent or group.

    Exactly one of `to_agent` and `to_group` is set (the decoder guarantees it).
    """

    id: str
    shop_id: str
    ts: int
    buyer_id: str
    to_agent: str | None = None
    to_group: str | None = None


@dataclass(frozen=True, slots=True)
class MessageSent:
    """`message`: one chat message inside a session; `sender` is `from` on the wire."""

    id: str
    shop_id: str
    ts: int
    buyer_id: str
    sender: Literal["buyer", "agent"]
    agent_id: str | None = None


@dataclass(frozen=True, slots=True)
class AgentStatusChanged:
    """`agent_status`: an agent went online, was suspended (挂起) or went offline."""

    id: str
    shop_id: str
    ts: int
    agent_id: str
    status: AgentStatus


@dataclass(frozen=True, slots=True)
class AgentStatsReported:
    """`agent_stats`: an external conversion rate for an agent, in [0, 1]."""

    id: str
    shop_id: str
    ts: int
    agent_id: str
    conversion_rate: float


InputEvent = (
    BuyerInquired
    | BuyerLeft
    | OrderPlaced
    | SessionTransferred
    | MessageSent
    | AgentStatusChanged
    | AgentStatsReported
)


# -------------------------------------------------------------------------- output events


@dataclass(frozen=True, slots=True)
class Assignment:
    """`assignment`: a session starts (or moves, for a transfer)."""

    id: str
    shop_id: str
    ts: int
    inquiry_id: str
    buyer_id: str
    agent_id: str
    group: str | None
    reason: AssignReason
    mode: Mode | None
    waited_ms: int
    config: str = ""  # the version of the shop's configuration that decided (contract §1.3)
    experiment: str | None = None  # the grey test the buyer is in, and its arm (§3.7)
    arm: str | None = None


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """`session_closed`: a session ended."""

    id: str
    shop_id: str
    ts: int
    buyer_id: str
    agent_id: str
    reason: CloseReason
    config: str = ""  # the version of the shop's configuration that decided (contract §1.3)


@dataclass(frozen=True, slots=True)
class QueueUpdate:
    """`queue_update`: a queued buyer entered, moved, left, expired or was served."""

    id: str
    shop_id: str
    ts: int
    inquiry_id: str
    buyer_id: str
    group: str | None
    status: QueueStatus
    position: int | None = None
    estimated_wait_s: int | None = None
    config: str = ""  # the version of the shop's configuration that decided (contract §1.3)
    experiment: str | None = None  # the grey test the buyer is in, and its arm (§3.7)
    arm: str | None = None


RejectKind = Literal["invalid", "unknown_shop", "refused", "misrouted"]
"""Why a record was dead-lettered: it does not decode (`invalid`), its shop is not configured
(`unknown_shop`), the engine refused it (`refused`), it is on another partition than its
shop's (`misrouted`)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """`rejected` (dead-letter): an input record that was refused, and why; `raw` and
    `shop_id` are bounded excerpts of its value and key."""

    id: str
    shop_id: str | None
    ts: int
    error: str
    source_topic: str
    partition: int
    offset: int
    raw: str
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"
    reason: RejectKind | None = None  # None only in dead letters written before the field
    # A dead letter carries bounded excerpts (topics.excerpt): a cut `raw`, or a cut record
    # key in `shop_id`, says so, with the size (bytes) and SHA-256 (hex) of the original.
    raw_truncated: bool = False
    raw_size: int | None = None
    raw_sha256: str | None = None
    key_truncated: bool = False
    key_size: int | None = None
    key_sha256: str | None = None


OutputEvent = Assignment | SessionClosed | QueueUpdate | Rejected
