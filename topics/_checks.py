"""Field checks and error wording for `topics.codec.decode` (the hot path).

Each check does the cheap test first (a type test and a length or range comparison) and
builds an error sentence only when that fails. Every sentence names the field (with its
path inside `context`) and what was wrong, so that a person reading the dead-letter topic
knows what to fix. Integers follow JSON Schema: 5 and 5.0 are integers, `true` is not.
"""

from __future__ import annotations

from typing import Final, NoReturn

import orjson

from topics.events import InquiryContext

MAX_RECORD_BYTES: Final = 65_536
"""Largest accepted record value, in bytes (64 KiB); the key is not counted."""
MAX_NAME_CHARS: Final = 128
"""Longest id, shop id, buyer id, agent id, group name or context string, in characters."""
MAX_TS: Final = 253_402_300_799_999
"""The latest `ts` accepted: 9999-12-31T23:59:59.999Z in epoch milliseconds."""
MAX_PRIORITY: Final = 1_000_000
"""`inquiry.priority` lies in [-MAX_PRIORITY, MAX_PRIORITY]."""

Obj = dict[str, object]
"""A decoded JSON object."""

NAME: Final = f"a string of 1 to {MAX_NAME_CHARS} characters"
_EMPTY_CONTEXT: Final = InquiryContext()
_JSON_TYPES: Final = {
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    bool: "boolean",
}


class DecodeError(Exception):
    """A record breaks the contract; str() is a sentence naming the field and the problem."""


def fail(message: str) -> NoReturn:
    raise DecodeError(message)


# ------------------------------------------------------------------------------ wording


def json_type(v: object) -> str:
    """The JSON name of a decoded value's type: null, boolean, integer, number, ..."""
    return "null" if v is None else _JSON_TYPES.get(type(v), type(v).__name__)


def show(v: object) -> str:
    """A short rendering of a wrong value for an error message ('foo', 1.5, [1,2])."""
    text = repr(v) if isinstance(v, str) else orjson.dumps(v).decode()
    return text if len(text) <= 40 else text[:37] + "..."


def _got(v: object) -> str:
    if isinstance(v, str):
        if not v or len(v) > MAX_NAME_CHARS:
            return "an empty string" if not v else f"a string of {len(v)} characters"
        return f"string {show(v)}"
    if type(v) is int or type(v) is float:
        return f"{json_type(v)} {show(v)}"
    return json_type(v)


def wrong(name: str, v: object, present: bool, expected: str) -> NoReturn:
    """Fail for a required field that is missing, null, or not `expected`."""
    if not present:
        fail(f"field '{name}' is missing")
    if v is None:
        fail(f"field '{name}' is null; it must be {expected}")
    fail(f"field '{name}' must be {expected}, got {_got(v)}")


# ------------------------------------------------------------------------------- checks


def name(obj: Obj, field: str) -> str:
    """A required string of 1..128 characters."""
    v = obj.get(field)
    if type(v) is str and 0 < len(v) <= MAX_NAME_CHARS:
        return v
    wrong(field, v, field in obj, NAME)


def optional_name(obj: Obj, field: str, path: str | None = None) -> str | None:
    """An optional string of 1..128 characters; absent and null are None."""
    v = obj.get(field)
    if v is None or (type(v) is str and 0 < len(v) <= MAX_NAME_CHARS):
        return v
    fail(f"field '{path or field}' must be {NAME} or null, got {_got(v)}")


def _integer(v: object) -> int | None:
    if type(v) is int:
        return v
    if type(v) is float and v.is_integer():
        return int(v)
    return None


def ts(obj: Obj) -> int:
    """`ts`: an integer from 0 to MAX_TS, epoch milliseconds (slow path of the inlined
    check)."""
    v = obj.get("ts")
    value = _integer(v)
    if value is None:
        wrong("ts", v, "ts" in obj, "an integer (epoch milliseconds)")
    if not 0 <= value <= MAX_TS:
        fail(
            f"field 'ts' must be an integer from 0 to {MAX_TS} (epoch milliseconds, up to the "
            f"year 9999), got {show(v)}"
        )
    return value


def priority(obj: Obj) -> int:
    """`inquiry.priority`: an integer in [-1_000_000, 1_000_000]; absent or null is 0."""
    v = obj.get("priority")
    if v is None:
        return 0
    value = _integer(v)
    if value is None or not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        bounds = f"from {-MAX_PRIORITY} to {MAX_PRIORITY}"
        fail(f"field 'priority' must be an integer {bounds} or null, got {_got(v)}")
    return value


def number(obj: Obj, field: str, low: float, high: float | None) -> float:
    """A required number (integer or not) in [low, high] (no upper bound if high is None)."""
    v = obj.get(field)
    if type(v) is not int and type(v) is not float:
        wrong(field, v, field in obj, "a number")
    if v < low or (high is not None and v > high):
        bounds = f">= {low:g}" if high is None else f"from {low:g} to {high:g}"
        fail(f"field '{field}' must be a number {bounds}, got {show(v)}")
    return float(v)


def optional_number(obj: Obj, field: str, low: float) -> float | None:
    """An optional number >= low; absent and null are None."""
    return None if obj.get(field) is None else number(obj, field, low, None)


def context(obj: Obj) -> InquiryContext:
    """`inquiry.context`: an optional object of optional parts; unknown parts are ignored."""
    v = obj.get("context")
    if v is None:
        return _EMPTY_CONTEXT
    if type(v) is not dict:
        fail(f"field 'context' must be an object or null, got {json_type(v)}")
    return InquiryContext(
        crowd=_crowd(v.get("crowd")),
        item_id=optional_name(v, "item_id", "context.item_id"),
        intent=optional_name(v, "intent", "context.intent"),
        order_status=optional_name(v, "order_status", "context.order_status"),
    )


def _crowd(v: object) -> tuple[str, ...]:
    if v is None:
        return ()
    if type(v) is not list:
        fail(f"field 'context.crowd' must be an array of strings or null, got {json_type(v)}")
    for i, tag in enumerate(v):
        if type(tag) is not str or not 0 < len(tag) <= MAX_NAME_CHARS:
            fail(f"field 'context.crowd[{i}]' must be {NAME}, got {_got(tag)}")
    return tuple(v)
