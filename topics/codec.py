"""Kafka records to typed events and back (docs/contract.md §1).

`decode` is the hot path: every consumed record goes through it. It parses with orjson and
checks each field by hand (a dict lookup and a type test), with no general JSON Schema
validation per event. `topics.schema_check` applies the same rules with `jsonschema` and the
files in `topics/schemas/`; the tests hold both to the same verdict, on a corpus of broken
records and on fuzzed input.

Errors::

    DecodeError    the record breaks the contract; str() is a sentence naming the field
                   (or the record part: value, key) and the problem. Never retriable: the
                   record goes to the dead-letter topic (see `rejected_for`).

Record-level rules: the value is at most `MAX_RECORD_BYTES` bytes (the key is not counted);
the key is required and equals `shop_id` byte for byte (UTF-8). Optional fields may be
absent or JSON null; unknown fields are ignored, so producers may add fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from enum import StrEnum
from typing import Final

import orjson

from topics import _checks as check
from topics._checks import (
    MAX_NAME_CHARS,
    MAX_PRIORITY,
    MAX_RECORD_BYTES,
    MAX_TS,
    DecodeError,
    Obj,
    fail,
)
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
    Rejected,
    RejectKind,
    SessionClosed,
    SessionTransferred,
)
from topics.excerpt import error_excerpt, key_excerpt, value_excerpt

__all__ = [
    "DEFAULT_TOPICS",
    "EVENT_TYPES",
    "MAX_NAME_CHARS",
    "MAX_PRIORITY",
    "MAX_RECORD_BYTES",
    "MAX_TS",
    "DecodeError",
    "TopicKind",
    "decode",
    "encode",
    "rejected_for",
]


class TopicKind(StrEnum):
    """A logical input topic; its real name is configurable, so decoding takes the kind."""

    INQUIRIES = "inquiries"
    MESSAGES = "messages"
    AGENT_STATUS = "agent_status"


EVENT_TYPES: Final[Mapping[TopicKind, tuple[str, ...]]] = {
    TopicKind.INQUIRIES: ("inquiry", "leave", "order", "transfer"),
    TopicKind.MESSAGES: ("message",),
    TopicKind.AGENT_STATUS: ("agent_status", "agent_stats"),
}
"""The event types each input topic carries (contract §1)."""

DEFAULT_TOPICS: Final[Mapping[TopicKind, str]] = {
    TopicKind.INQUIRIES: "fenliu.inquiries",
    TopicKind.MESSAGES: "fenliu.messages",
    TopicKind.AGENT_STATUS: "fenliu.agent-status",
}
"""Default topic name of each input topic (contract §1; configurable in section 5)."""

_Builder = Callable[[Obj, str, str, int], InputEvent]
_STATUSES: Final[Mapping[str, AgentStatus]] = {s.value: s for s in AgentStatus}

# ------------------------------------------------------------------------ event builders


def _inquiry(obj: Obj, id_: str, shop_id: str, ts: int) -> BuyerInquired:
    buyer_id = check.name(obj, "buyer_id")
    context = check.context(obj)
    return BuyerInquired(id_, shop_id, ts, buyer_id, context, check.priority(obj))


def _leave(obj: Obj, id_: str, shop_id: str, ts: int) -> BuyerLeft:
    return BuyerLeft(id_, shop_id, ts, check.name(obj, "buyer_id"))


def _order(obj: Obj, id_: str, shop_id: str, ts: int) -> OrderPlaced:
    buyer_id = check.name(obj, "buyer_id")
    return OrderPlaced(id_, shop_id, ts, buyer_id, check.optional_number(obj, "amount", 0))


def _transfer(obj: Obj, id_: str, shop_id: str, ts: int) -> SessionTransferred:
    buyer_id = check.name(obj, "buyer_id")
    to_agent = check.optional_name(obj, "to_agent")
    to_group = check.optional_name(obj, "to_group")
    if (to_agent is None) == (to_group is None):
        which = "both are set" if to_agent is not None else "neither is set"
        fail(f"a transfer needs exactly one of fields 'to_agent' and 'to_group'; {which}")
    return SessionTransferred(id_, shop_id, ts, buyer_id, to_agent, to_group)


def _message(obj: Obj, id_: str, shop_id: str, ts: int) -> MessageSent:
    buyer_id = check.name(obj, "buyer_id")
    sender = obj.get("from")
    if sender == "buyer":
        agent_id = check.optional_name(obj, "agent_id")
        return MessageSent(id_, shop_id, ts, buyer_id, "buyer", agent_id)
    if sender == "agent":
        if obj.get("agent_id") is None:
            fail("field 'agent_id' is missing; it is required when 'from' is 'agent'")
        return MessageSent(id_, shop_id, ts, buyer_id, "agent", check.name(obj, "agent_id"))
    if type(sender) is not str:
        check.wrong("from", sender, "from" in obj, "'buyer' or 'agent'")
    fail(f"field 'from' must be 'buyer' or 'agent', got {check.show(sender)}")


def _agent_status(obj: Obj, id_: str, shop_id: str, ts: int) -> AgentStatusChanged:
    agent_id = check.name(obj, "agent_id")
    v = obj.get("status")
    status = _STATUSES.get(v) if type(v) is str else None
    if status is None:
        expected = "one of " + ", ".join(repr(s.value) for s in AgentStatus)
        if type(v) is not str:
            check.wrong("status", v, "status" in obj, expected)
        fail(f"field 'status' must be {expected}, got {check.show(v)}")
    return AgentStatusChanged(id_, shop_id, ts, agent_id, status)


def _agent_stats(obj: Obj, id_: str, shop_id: str, ts: int) -> AgentStatsReported:
    agent_id = check.name(obj, "agent_id")
    rate = check.number(obj, "conversion_rate", 0, 1)
    return AgentStatsReported(id_, shop_id, ts, agent_id, rate)


_BUILDERS: Final[Mapping[str, _Builder]] = {
    "inquiry": _inquiry,
    "leave": _leave,
    "order": _order,
    "transfer": _transfer,
    "message": _message,
    "agent_status": _agent_status,
    "agent_stats": _agent_stats,
}
_TOPIC_BUILDERS: Final[Mapping[TopicKind, Mapping[str, _Builder]]] = {
    kind: {t: _BUILDERS[t] for t in types} for kind, types in EVENT_TYPES.items()
}

# --------------------------------------------------------------------------------- decode


def decode(value: bytes | None, key: bytes | None, kind: TopicKind) -> InputEvent:
    """Decode one record of an input topic into its event, or raise `DecodeError`.

    Checks, in order, reporting the first problem: size, JSON, object, `type` (one the
    topic carries), `id`, `shop_id`, the key (equal to `shop_id`), `ts`, then the fields of
    the event type in the order contract §1.2 lists them.
    """
    if value is None or len(value) > MAX_RECORD_BYTES:
        fail(_size_problem(value))
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(_json_problem(value, exc)) from exc
    if type(obj) is not dict:
        fail(f"value must be a JSON object, got {check.json_type(obj)}")
    t = obj.get("type")
    build = _TOPIC_BUILDERS[kind].get(t) if type(t) is str else None
    if build is None:
        fail(_type_problem(obj, kind))
    # The envelope is checked inline (every record pays for it); `check.*` words the error.
    id_ = obj.get("id")
    if type(id_) is not str or not 0 < len(id_) <= MAX_NAME_CHARS:
        id_ = check.name(obj, "id")
    shop_id = obj.get("shop_id")
    if type(shop_id) is not str or not 0 < len(shop_id) <= MAX_NAME_CHARS:
        shop_id = check.name(obj, "shop_id")
    if key is None or key != shop_id.encode():
        fail(_key_problem(key, shop_id))
    ts = obj.get("ts")
    if type(ts) is not int or not 0 <= ts <= MAX_TS:
        ts = check.ts(obj)
    return build(obj, id_, shop_id, ts)


def _size_problem(value: bytes | None) -> str:
    if value is None:
        return "value is missing (a tombstone record); it must be a JSON object"
    return f"record value is {len(value)} bytes, over the 64 KiB limit ({MAX_RECORD_BYTES})"


def _json_problem(value: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        value.decode()
    except UnicodeDecodeError as bad:
        return f"value is not valid UTF-8 (byte 0x{value[bad.start]:02x} at offset {bad.start})"
    return f"value is not valid JSON: {exc}"


def _type_problem(obj: Obj, kind: TopicKind) -> str:
    t = obj.get("type")
    carries = f"the {kind.value} topic carries {', '.join(EVENT_TYPES[kind])}"
    if "type" not in obj:
        return f"field 'type' is missing; {carries}"
    if type(t) is not str:
        return f"field 'type' must be a string, got {check.json_type(t)}; {carries}"
    home = next((k for k, types in EVENT_TYPES.items() if t in types), None)
    if home is not None:
        return f"event type {t!r} belongs on the {home.value} topic; {carries}"
    return f"unknown event type {check.show(t)}; {carries}"


def _key_problem(key: bytes | None, shop_id: str) -> str:
    if key is None:
        return f"record key is missing; it must equal shop_id {shop_id!r}"
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return f"record key is not valid UTF-8; it must equal shop_id {shop_id!r}"
    return f"record key {check.show(text)} differs from shop_id {shop_id!r}"


# --------------------------------------------------------------------------------- encode


def encode(event: OutputEvent | InputEvent) -> bytes:
    """The record value of `event`: a JSON object in its wire form (contract §1.2, 1.3).

    Output events keep `group` and `mode` (null when None); `assignment` and
    `queue_update` leave out `experiment`/`arm` when None (a buyer in no grey test), and
    `queue_update` leaves out `position`/`estimated_wait_s` when None; `rejected` leaves
    out `raw_encoding` when it is "utf-8" (and `reason` when None, and the size and hash
    fields of `raw` and of the key unless they were cut). Input events leave out every None
    field and an empty context, so that `decode(encode(e), ...) == e`.
    """
    return orjson.dumps(_wire(event))


def _wire(event: OutputEvent | InputEvent) -> Obj:
    match event:
        case Assignment() | SessionClosed():
            return _output_wire(event, drop_none=_EXPERIMENT)
        case QueueUpdate():
            return _output_wire(event, drop_none=("position", "estimated_wait_s", *_EXPERIMENT))
        case Rejected():
            return _output_wire(event, drop=_rejected_omits(event), drop_none=("reason",))
        case BuyerInquired():
            return _inquiry_wire(event)
        case MessageSent():
            return _input_wire(event, "message", {"sender": "from"})
        case _:
            return _input_wire(event, _INPUT_TYPES[type(event)])


_EXPERIMENT: Final = ("experiment", "arm")  # only a buyer in a grey test has them
_RAW_CUT: Final = ("raw_truncated", "raw_size", "raw_sha256")
_KEY_CUT: Final = ("key_truncated", "key_size", "key_sha256")


def _rejected_omits(event: Rejected) -> tuple[str, ...]:
    """The fields of a dead letter left out on the wire: those that say nothing new."""
    omit: tuple[str, ...] = ("raw_encoding",) if event.raw_encoding == "utf-8" else ()
    if not event.raw_truncated:
        omit += _RAW_CUT
    if not event.key_truncated:
        omit += _KEY_CUT
    return omit


_OUTPUT_TYPES: Final[Mapping[type, str]] = {
    Assignment: "assignment",
    SessionClosed: "session_closed",
    QueueUpdate: "queue_update",
    Rejected: "rejected",
}
_INPUT_TYPES: Final[Mapping[type, str]] = {
    BuyerInquired: "inquiry",
    BuyerLeft: "leave",
    OrderPlaced: "order",
    SessionTransferred: "transfer",
    MessageSent: "message",
    AgentStatusChanged: "agent_status",
    AgentStatsReported: "agent_stats",
}


_FIELD_NAMES: Final[Mapping[type, tuple[str, ...]]] = {
    cls: tuple(f.name for f in fields(cls))
    for cls in (*_OUTPUT_TYPES, *_INPUT_TYPES, InquiryContext)
}


def _fields(event: OutputEvent | InputEvent | InquiryContext) -> Obj:
    return {name: getattr(event, name) for name in _FIELD_NAMES[type(event)]}


def _output_wire(
    event: OutputEvent, *, drop_none: tuple[str, ...] = (), drop: tuple[str, ...] = ()
) -> Obj:
    out: Obj = {"type": _OUTPUT_TYPES[type(event)]}
    for name, v in _fields(event).items():
        if name not in drop and not (v is None and name in drop_none):
            out[name] = v
    return out


def _input_wire(event: InputEvent, type_: str, rename: Mapping[str, str] | None = None) -> Obj:
    out: Obj = {"type": type_}
    for name, v in _fields(event).items():
        if v is not None:
            out[rename.get(name, name) if rename else name] = v
    return out


def _inquiry_wire(event: BuyerInquired) -> Obj:
    out: Obj = {
        "type": "inquiry",
        "id": event.id,
        "shop_id": event.shop_id,
        "ts": event.ts,
        "buyer_id": event.buyer_id,
    }
    context = {k: v for k, v in _fields(event.context).items() if v is not None and v != ()}
    if context:
        out["context"] = context
    out["priority"] = event.priority
    return out


# --------------------------------------------------------------------------- dead-letter


def rejected_for(
    error: str,
    *,
    source_topic: str,
    partition: int,
    offset: int,
    value: bytes | None,
    key: bytes | None,
    now_ms: int,
    kind: RejectKind,
) -> Rejected:
    """The dead-letter event for a record that failed to decode (or was refused later).

    Its id depends only on where the record was, so a replay yields the same event. It
    always fits the broker: `raw`, the echoed key (`shop_id`) and `error` are bounded
    excerpts (topics.excerpt), and a cut `raw` or key carries the original's size and hash.
    """
    key_cut = key_excerpt(key)
    raw, raw_encoding = value_excerpt(b"" if value is None else value)
    return Rejected(
        id=f"rej:{source_topic}:{partition}:{offset}",
        shop_id=None if key_cut is None else key_cut.text,
        ts=now_ms,
        error=error_excerpt(error),
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        raw=raw.text,
        raw_encoding=raw_encoding,
        reason=kind,
        raw_truncated=raw.truncated,
        raw_size=raw.size,
        raw_sha256=raw.sha256,
        key_truncated=key_cut is not None and key_cut.truncated,
        key_size=None if key_cut is None else key_cut.size,
        key_sha256=None if key_cut is None else key_cut.sha256,
    )


def type_name(event: OutputEvent | InputEvent) -> str:
    """The wire `type` of an event ("inquiry", "assignment", ...)."""
    return _INPUT_TYPES.get(type(event)) or _OUTPUT_TYPES[type(event)]
