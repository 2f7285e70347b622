"""The example records in topics/examples/ against the schemas and the codec.

Pins: every event type has an example; every example is valid for its topic's schema;
input examples decode and re-encode to the same JSON; output examples are exactly what
`encode` produces for the event they describe; schemas and Python enums agree; and for any
valid input event, `decode(encode(e)) == e` and the encoding passes the schema check.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import topics
from topics.codec import (
    DEFAULT_TOPICS,
    EVENT_TYPES,
    MAX_RECORD_BYTES,
    MAX_TS,
    DecodeError,
    TopicKind,
    decode,
    encode,
    rejected_for,
)
from topics.events import (
    AgentStatsReported,
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
    OrderPlaced,
    OutputEvent,
    QueueStatus,
    QueueUpdate,
    Rejected,
    SessionClosed,
    SessionTransferred,
)
from topics.schema_check import TOPICS, check_record, load_schema

PACKAGE = Path(topics.__file__).parent
EXAMPLES = {p.stem: json.loads(p.read_text("utf-8")) for p in (PACKAGE / "examples").glob("*.json")}
KIND_OF_TOPIC = {name: kind for kind, name in DEFAULT_TOPICS.items()}
INPUT_TYPES = [t for types in EVENT_TYPES.values() for t in types]
OUTPUT_TYPES = ["assignment", "session_closed", "queue_update", "rejected"]
INPUT_EXAMPLES = sorted(n for n in EXAMPLES if n in INPUT_TYPES)
OUTPUT_EXAMPLES = sorted(n for n in EXAMPLES if n in OUTPUT_TYPES)


def _record(name: str) -> tuple[str, bytes, bytes]:
    example = EXAMPLES[name]
    return example["topic"], example["key"].encode(), orjson.dumps(example["value"])


def _output_event(value: dict[str, Any]) -> OutputEvent:
    """The output event a JSON value describes (the inverse of `encode`, for tests only)."""
    fields = {k: v for k, v in value.items() if k != "type"}
    match value["type"]:
        case "assignment":
            mode = None if fields["mode"] is None else Mode(fields["mode"])
            return Assignment(**fields | {"reason": AssignReason(fields["reason"]), "mode": mode})
        case "session_closed":
            return SessionClosed(**fields | {"reason": CloseReason(fields["reason"])})
        case "queue_update":
            return QueueUpdate(**fields | {"status": QueueStatus(fields["status"])})
        case "rejected":
            return Rejected(**fields)
    raise AssertionError(f"not an output event type: {value['type']}")


# ------------------------------------------------------------------------------ examples


def test_every_event_type_has_exactly_one_example_file() -> None:
    assert sorted(EXAMPLES) == sorted(INPUT_TYPES + OUTPUT_TYPES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_is_valid_for_its_topic_schema(name: str) -> None:
    topic, key, value = _record(name)
    assert EXAMPLES[name]["value"]["type"] == name
    assert check_record(topic, key, value) is None


@pytest.mark.parametrize("name", INPUT_EXAMPLES)
def test_input_example_decodes_and_encodes_back_to_the_same_json(name: str) -> None:
    topic, key, value = _record(name)
    event = decode(value, key, KIND_OF_TOPIC[topic])
    assert orjson.loads(encode(event)) == EXAMPLES[name]["value"]
    assert decode(encode(event), key, KIND_OF_TOPIC[topic]) == event


@pytest.mark.parametrize("name", OUTPUT_EXAMPLES)
def test_output_example_is_exactly_the_encoding_of_its_event(name: str) -> None:
    value = EXAMPLES[name]["value"]
    assert orjson.loads(encode(_output_event(value))) == value


def test_rejected_example_carries_the_decoders_own_error_for_its_raw_value() -> None:
    value = EXAMPLES["rejected"]["value"]
    with pytest.raises(DecodeError) as caught:
        decode(value["raw"].encode(), b"demo", TopicKind.INQUIRIES)
    assert str(caught.value) == value["error"]
    rebuilt = rejected_for(
        value["error"],
        source_topic=value["source_topic"],
        partition=value["partition"],
        offset=value["offset"],
        value=value["raw"].encode(),
        key=b"demo",
        now_ms=value["ts"],
        kind=value["reason"],
    )
    assert rebuilt == _output_event(value)


# ------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("topic", sorted(TOPICS.values()))
def test_schema_is_valid_draft_2020_12_with_the_record_annotations(topic: str) -> None:
    schema = load_schema(topic)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["x-fenliu-record-key"] == "shop_id"
    assert schema["x-fenliu-max-record-bytes"] == MAX_RECORD_BYTES


@pytest.mark.parametrize("kind", list(TopicKind))
def test_input_schema_lists_the_event_types_the_decoder_accepts(kind: TopicKind) -> None:
    schema = load_schema(kind)
    assert schema["properties"]["type"]["enum"] == list(EVENT_TYPES[kind])


def test_schema_enums_match_the_python_enums() -> None:
    defs = {
        **load_schema("fenliu.assignments")["$defs"],
        **load_schema("fenliu.queue-updates")["$defs"],
        **load_schema("fenliu.agent-status")["$defs"],
    }
    assert defs["assignment"]["properties"]["reason"]["enum"] == [r.value for r in AssignReason]
    assert defs["assignment"]["properties"]["mode"]["enum"] == [*(m.value for m in Mode), None]
    assert defs["session_closed"]["properties"]["reason"]["enum"] == [r.value for r in CloseReason]
    assert defs["queue_update"]["properties"]["status"]["enum"] == [s.value for s in QueueStatus]
    assert defs["agent_status"]["properties"]["status"]["enum"] == [s.value for s in AgentStatus]


# -------------------------------------------------------------------------------- encode


def test_assignment_encodes_group_and_mode_as_null_when_absent() -> None:
    event = Assignment("asg:i1", "demo", 5, "i1", "b-1", "a1", None, AssignReason.STICKY, None, 0)
    wire = orjson.loads(encode(event))
    assert wire["group"] is None
    assert wire["mode"] is None
    assert wire["reason"] == "sticky"


def test_queue_update_leaves_out_position_and_estimate_when_none() -> None:
    event = QueueUpdate("q:i1:4", "demo", 5, "i1", "b-1", "presale", QueueStatus.LEFT)
    wire = orjson.loads(encode(event))
    assert "position" not in wire
    assert "estimated_wait_s" not in wire
    assert wire["group"] == "presale"


def test_rejected_for_non_utf8_value_and_key_uses_base64_and_null_shop() -> None:
    raw = b'{"type":"inquiry","buyer_id":"\xff"}'
    event = rejected_for(
        "value is not valid UTF-8",
        source_topic="t",
        partition=0,
        offset=7,
        value=raw,
        key=b"\xfe",
        now_ms=9,
        kind="invalid",
    )
    assert event.id == "rej:t:0:7"
    assert event.shop_id is None
    assert event.raw_encoding == "base64"
    assert base64.b64decode(event.raw) == raw
    wire = orjson.loads(encode(event))
    assert wire["raw_encoding"] == "base64"
    assert check_record("dead_letter", None, encode(event)) is None


def test_rejected_for_tombstone_has_empty_raw_and_no_raw_encoding_on_the_wire() -> None:
    event = rejected_for(
        "value is missing",
        source_topic="t",
        partition=1,
        offset=2,
        value=None,
        key=b"demo",
        now_ms=3,
        kind="invalid",
    )
    assert (event.raw, event.shop_id) == ("", "demo")
    assert "raw_encoding" not in orjson.loads(encode(event))
    assert check_record("dead_letter", b"demo", encode(event)) is None


# ------------------------------------------------------------------- round-trip property

_names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=128)
_optional_names = st.none() | _names
_envelope = {"id": _names, "shop_id": _names, "ts": st.integers(0, MAX_TS)}
_contexts = st.builds(
    InquiryContext,
    crowd=st.lists(_names, max_size=4).map(tuple),
    item_id=_optional_names,
    intent=_optional_names,
    order_status=_optional_names,
)
_input_events: st.SearchStrategy[InputEvent] = st.one_of(
    st.builds(
        BuyerInquired,
        **_envelope,
        buyer_id=_names,
        context=_contexts,
        priority=st.integers(-1_000_000, 1_000_000),
    ),
    st.builds(BuyerLeft, **_envelope, buyer_id=_names),
    st.builds(
        OrderPlaced,
        **_envelope,
        buyer_id=_names,
        amount=st.none() | st.floats(min_value=0, allow_infinity=False),
    ),
    st.builds(
        SessionTransferred, **_envelope, buyer_id=_names, to_agent=_names, to_group=st.none()
    ),
    st.builds(
        SessionTransferred, **_envelope, buyer_id=_names, to_agent=st.none(), to_group=_names
    ),
    st.builds(MessageSent, **_envelope, buyer_id=_names, sender=st.just("agent"), agent_id=_names),
    st.builds(
        MessageSent, **_envelope, buyer_id=_names, sender=st.just("buyer"), agent_id=_optional_names
    ),
    st.builds(
        AgentStatusChanged, **_envelope, agent_id=_names, status=st.sampled_from(AgentStatus)
    ),
    st.builds(AgentStatsReported, **_envelope, agent_id=_names, conversion_rate=st.floats(0, 1)),
)


def _kind_of(event: InputEvent) -> TopicKind:
    type_ = orjson.loads(encode(event))["type"]
    return next(kind for kind, types in EVENT_TYPES.items() if type_ in types)


@settings(max_examples=300)
@given(_input_events)
def test_decode_inverts_encode_for_every_valid_input_event(event: InputEvent) -> None:
    assert decode(encode(event), event.shop_id.encode(), _kind_of(event)) == event


@settings(max_examples=150, deadline=None)
@given(_input_events)
def test_every_encoded_input_event_passes_the_schema_check(event: InputEvent) -> None:
    assert check_record(_kind_of(event), event.shop_id.encode(), encode(event)) is None
