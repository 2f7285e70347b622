"""Broken records: the decoder and the schema check reject the same ones, and say why.

A corpus of broken records (built by breaking the example records one way at a time) is
rejected by both `topics.schema_check.check_record` and `topics.codec.decode`, and each
decoder message names the offending field. Edge records that the contract allows are
accepted by both. Hypothesis then fuzzes bytes and JSON objects: decode never raises
anything but DecodeError, and on JSON objects its verdict equals the schema's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import topics
from topics.codec import (
    DEFAULT_TOPICS,
    EVENT_TYPES,
    MAX_RECORD_BYTES,
    DecodeError,
    TopicKind,
    decode,
)
from topics.schema_check import check_record

EXAMPLES_DIR = Path(topics.__file__).parent / "examples"
KIND_OF_TYPE = {t: kind for kind, types in EVENT_TYPES.items() for t in types}
BASES: dict[str, dict[str, Any]] = {
    t: json.loads((EXAMPLES_DIR / f"{t}.json").read_text("utf-8"))["value"] for t in KIND_OF_TYPE
}
ENVELOPE = ["type", "id", "shop_id", "ts"]
FIELDS = {
    "inquiry": [*ENVELOPE, "buyer_id", "context", "priority"],
    "leave": [*ENVELOPE, "buyer_id"],
    "order": [*ENVELOPE, "buyer_id", "amount"],
    "transfer": [*ENVELOPE, "buyer_id", "to_agent", "to_group"],
    "message": [*ENVELOPE, "buyer_id", "from", "agent_id"],
    "agent_status": [*ENVELOPE, "agent_id", "status"],
    "agent_stats": [*ENVELOPE, "agent_id", "conversion_rate"],
}
"""Every field of each event type (contract §1.1, 1.2)."""
REQUIRED = {
    **{t: [*ENVELOPE, "buyer_id"] for t in ("inquiry", "leave", "order")},
    "transfer": [*ENVELOPE, "buyer_id", "to_group"],
    "message": [*ENVELOPE, "buyer_id", "from", "agent_id"],
    "agent_status": [*ENVELOPE, "agent_id", "status"],
    "agent_stats": [*ENVELOPE, "agent_id", "conversion_rate"],
}
"""Fields whose absence breaks each example (to_group and agent_id: as the examples use them)."""
MISTYPED: dict[str, object] = {
    "type": 7,
    "id": 42,
    "shop_id": ["demo"],
    "ts": "1763861400000",
    "buyer_id": 1001,
    "context": "vip",
    "priority": "high",
    "amount": "259.9",
    "to_agent": 7,
    "to_group": False,
    "from": 1,
    "agent_id": True,
    "status": 1,
    "conversion_rate": "0.42",
}


def _record(type_: str, change: Callable[[dict[str, Any]], object] | None = None) -> bytes:
    value = json.loads(json.dumps(BASES[type_]))
    if change is not None:
        change(value)
    return orjson.dumps(value)


def _case(
    case_id: str,
    type_: str,
    value: bytes,
    subject: str,
    *,
    key: bytes | None = b"demo",
    kind: TopicKind | None = None,
) -> Any:
    """One corpus entry: the topic it is read from, key, value, and the word its error names."""
    return pytest.param(kind or KIND_OF_TYPE[type_], key, value, subject, id=case_id)


def _set(**fields: object) -> Callable[[dict[str, Any]], None]:
    return lambda value: value.update(fields)


def _drop(*names: str) -> Callable[[dict[str, Any]], object]:
    return lambda value: [value.pop(n) for n in names]


def _set_context(**fields: object) -> Callable[[dict[str, Any]], None]:
    return lambda value: value["context"].update(fields)


SPECIFIC_CASES = [
    _case("not-json", "inquiry", b'{"type": "inquiry",', "value"),
    _case("empty-value", "inquiry", b"", "value"),
    _case("not-utf8", "inquiry", b'{"type":"inquiry","buyer_id":"\xff\xfe"}', "value"),
    _case("array-not-object", "inquiry", b'[{"type":"inquiry"}]', "value"),
    _case("string-not-object", "message", b'"message"', "value"),
    _case("null-not-object", "agent_status", b"null", "value"),
    _case("oversized", "inquiry", _record("inquiry", _set(pad="x" * MAX_RECORD_BYTES)), "value"),
    _case("key-differs", "leave", _record("leave"), "key", key=b"other-shop"),
    _case("key-missing", "order", _record("order"), "key", key=None),
    _case("key-not-utf8", "order", _record("order"), "key", key=b"\xffdemo"),
    _case("unknown-type", "inquiry", _record("inquiry", _set(type="foo")), "type"),
    _case(
        "type-on-wrong-topic",
        "inquiry",
        _record("inquiry"),
        "type",
        kind=TopicKind.MESSAGES,
    ),
    _case("ts-boolean", "leave", _record("leave", _set(ts=True)), "ts"),
    _case("ts-negative", "leave", _record("leave", _set(ts=-1)), "ts"),
    _case("ts-fraction", "leave", _record("leave", _set(ts=1.5)), "ts"),
    _case("ts-after-9999", "leave", _record("leave", _set(ts=253_402_300_800_000)), "ts"),
    _case("ts-huge-float", "leave", _record("leave", _set(ts=1e300)), "ts"),
    _case("id-empty", "leave", _record("leave", _set(id="")), "id"),
    _case("id-129-chars", "leave", _record("leave", _set(id="i" * 129)), "id"),
    _case("buyer-id-null", "leave", _record("leave", _set(buyer_id=None)), "buyer_id"),
    _case(
        "shop-id-129-chars",
        "leave",
        _record("leave", _set(shop_id="s" * 129)),
        "shop_id",
        key=b"s" * 129,
    ),
    _case("crowd-not-array", "inquiry", _record("inquiry", _set_context(crowd="vip")), "crowd"),
    _case("crowd-empty-tag", "inquiry", _record("inquiry", _set_context(crowd=[""])), "crowd"),
    _case("crowd-tag-number", "inquiry", _record("inquiry", _set_context(crowd=[3])), "crowd"),
    _case("item-id-number", "inquiry", _record("inquiry", _set_context(item_id=5)), "item_id"),
    _case("intent-empty", "inquiry", _record("inquiry", _set_context(intent="")), "intent"),
    _case(
        "order-status-object",
        "inquiry",
        _record("inquiry", _set_context(order_status={})),
        "order_status",
    ),
    _case("priority-too-high", "inquiry", _record("inquiry", _set(priority=10**6 + 1)), "priority"),
    _case("priority-fraction", "inquiry", _record("inquiry", _set(priority=0.5)), "priority"),
    _case("priority-boolean", "inquiry", _record("inquiry", _set(priority=True)), "priority"),
    _case("amount-negative", "order", _record("order", _set(amount=-1)), "amount"),
    _case(
        "transfer-both-targets",
        "transfer",
        _record("transfer", _set(to_agent="a1")),
        "to_agent",
    ),
    _case(
        "transfer-both-targets-null",
        "transfer",
        _record("transfer", _set(to_group=None, to_agent=None)),
        "to_group",
    ),
    _case("transfer-empty-agent", "transfer", _record("transfer", _set(to_agent="")), "to_agent"),
    _case(
        "agent-message-agent-id-null",
        "message",
        _record("message", _set(agent_id=None)),
        "agent_id",
    ),
    _case(
        "buyer-message-empty-agent-id",
        "message",
        _record("message", _set(**{"from": "buyer", "agent_id": ""})),
        "agent_id",
    ),
    _case("from-not-in-enum", "message", _record("message", _set(**{"from": "bot"})), "from"),
    _case(
        "status-not-in-enum",
        "agent_status",
        _record("agent_status", _set(status="away")),
        "status",
    ),
    _case(
        "conversion-rate-1.5",
        "agent_stats",
        _record("agent_stats", _set(conversion_rate=1.5)),
        "conversion_rate",
    ),
    _case(
        "conversion-rate-negative",
        "agent_stats",
        _record("agent_stats", _set(conversion_rate=-0.1)),
        "conversion_rate",
    ),
]


def _one_field_cases() -> list[Any]:
    """For every event type: each required field missing, and each field mistyped."""
    cases = []
    for type_, required in REQUIRED.items():
        cases += [
            _case(f"{type_}-missing-{field}", type_, _record(type_, _drop(field)), field)
            for field in required
        ]
        cases += [
            _case(f"{type_}-mistyped-{field}", type_, _record(type_, _set(**{field: bad})), field)
            for field, bad in MISTYPED.items()
            if field in FIELDS[type_]
        ]
    return cases


CORPUS = [*SPECIFIC_CASES, *_one_field_cases()]


@pytest.mark.parametrize(("kind", "key", "value", "subject"), CORPUS)
def test_broken_record_is_rejected_by_both_schema_check_and_decoder(
    kind: TopicKind, key: bytes | None, value: bytes, subject: str
) -> None:
    schema_reason = check_record(kind, key, value)
    with pytest.raises(DecodeError):
        decode(value, key, kind)
    assert schema_reason is not None


@pytest.mark.parametrize(("kind", "key", "value", "subject"), CORPUS)
def test_decoder_error_names_the_offending_field(
    kind: TopicKind, key: bytes | None, value: bytes, subject: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(value, key, kind)
    assert subject in str(caught.value)


def test_tombstone_record_is_rejected_with_a_sentence() -> None:
    with pytest.raises(DecodeError, match="value is missing"):
        decode(None, b"demo", TopicKind.INQUIRIES)


def _padded_to(limit: int) -> bytes:
    short = _record("inquiry", _set(pad=""))
    return _record("inquiry", _set(pad="x" * (limit - len(short))))


EDGES = {
    "ts-integral-float": ("inquiry", _set(ts=1763861400000.0)),
    "ts-last-of-9999": ("inquiry", _set(ts=253_402_300_799_999)),
    "priority-integral-float": ("inquiry", _set(priority=3.0)),
    "optionals-null": ("inquiry", _set(priority=None, context=None)),
    "optionals-absent": ("inquiry", _drop("priority", "context")),
    "context-unknown-part": ("inquiry", _set_context(channel="app", crowd=None)),
    "unknown-fields": ("leave", _set(source="web", schema_version=2)),
    "id-128-chars": ("leave", _set(id="i" * 128)),
    "amount-null": ("order", _set(amount=None)),
    "amount-zero": ("order", _set(amount=0)),
    "to-agent-null": ("transfer", _set(to_agent=None)),
    "buyer-message-naming-agent": ("message", _set(**{"from": "buyer"})),
    "buyer-message": ("message", lambda v: v.update({"from": "buyer"}) or v.pop("agent_id")),
    "rate-one": ("agent_stats", _set(conversion_rate=1)),
    "rate-zero": ("agent_stats", _set(conversion_rate=0)),
}
EDGE_RECORDS = [
    *(pytest.param(t, _record(t, change), id=name) for name, (t, change) in EDGES.items()),
    pytest.param("inquiry", _padded_to(MAX_RECORD_BYTES), id="exactly-64-KiB"),
]


@pytest.mark.parametrize(("type_", "value"), EDGE_RECORDS)
def test_edge_record_allowed_by_the_contract_is_accepted_by_both(type_: str, value: bytes) -> None:
    kind = KIND_OF_TYPE[type_]
    assert len(value) <= MAX_RECORD_BYTES
    assert check_record(kind, b"demo", value) is None
    assert decode(value, b"demo", kind).id == orjson.loads(value)["id"]


# --------------------------------------------------------------------------------- fuzzing

ALL_FIELDS = sorted({f for fields in FIELDS.values() for f in fields})
_text = st.text(st.characters(codec="utf-8"), max_size=12)
_near_valid = st.sampled_from(
    [
        *KIND_OF_TYPE,
        "buyer", "agent", "online", "away", "demo", "", "x" * 128, "x" * 129,
        0, -1, 1, 2, 0.5, 1.5, 5.0, -0.0, 10**6, 10**6 + 1, 2**64 - 1, 1e19, True, False, None,
        [], ["vip"], [""], [7], {}, {"crowd": ["new"]}, {"crowd": "vip"}, {"item_id": ""},
    ]
)  # fmt: skip
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json = st.recursive(
    _near_valid | _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def _mutated_records(draw: st.DrawFn) -> tuple[TopicKind, bytes | None, bytes]:
    """An example record with up to three fields dropped or replaced, read from any topic."""
    type_ = draw(st.sampled_from(sorted(BASES)))
    value = json.loads(json.dumps(BASES[type_]))
    for _ in range(draw(st.integers(0, 3))):
        target = value
        if isinstance(value.get("context"), dict) and draw(st.booleans()):
            target = value["context"]
        field = draw(st.sampled_from(ALL_FIELDS) | st.sampled_from(["crowd", "item_id", "intent"]))
        if draw(st.booleans()):
            target.pop(field, None)
        else:
            target[field] = draw(_json)
    shop = value.get("shop_id")
    same = shop.encode() if isinstance(shop, str) else b"demo"
    key = draw(st.sampled_from([same, same, same, None, b"other"]))
    home = KIND_OF_TYPE[type_]
    kind = draw(st.sampled_from([home, home, home, *TopicKind]))
    return kind, key, orjson.dumps(value)


_objects = st.dictionaries(st.sampled_from(ALL_FIELDS) | _text, _json, max_size=8)


def _verdicts(kind: TopicKind, key: bytes | None, value: bytes) -> tuple[str | None, str | None]:
    try:
        decode(value, key, kind)
    except DecodeError as exc:
        decoded: str | None = str(exc)
    else:
        decoded = None
    return decoded, check_record(kind, key, value)


@given(st.binary(max_size=300), st.none() | st.binary(max_size=8), st.sampled_from(TopicKind))
def test_decode_of_arbitrary_bytes_raises_nothing_but_decode_error(
    value: bytes, key: bytes | None, kind: TopicKind
) -> None:
    try:
        decode(value, key, kind)
    except DecodeError as exc:
        assert str(exc)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_records())
def test_schema_and_decoder_agree_on_mutated_records(
    record: tuple[TopicKind, bytes | None, bytes],
) -> None:
    decoded, schema = _verdicts(*record)
    assert (decoded is None) == (schema is None), f"decoder: {decoded!r}; schema: {schema!r}"


@settings(max_examples=200, deadline=None)
@given(_objects, st.sampled_from(TopicKind), st.sampled_from([b"demo", None]))
def test_schema_and_decoder_agree_on_arbitrary_objects(
    value: dict[str, Any], kind: TopicKind, key: bytes | None
) -> None:
    decoded, schema = _verdicts(kind, key, orjson.dumps(value))
    assert (decoded is None) == (schema is None), f"decoder: {decoded!r}; schema: {schema!r}"


def test_default_topic_names_are_the_contracts() -> None:
    assert set(DEFAULT_TOPICS.values()) == {
        "fenliu.inquiries",
        "fenliu.messages",
        "fenliu.agent-status",
    }
