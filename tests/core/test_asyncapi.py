"""docs/asyncapi.json: up to date with topics/, valid AsyncAPI 3.0, and complete.

Pins: the checked-in document is exactly what `python -m topics.asyncapi` writes now; it is
valid for the AsyncAPI 3.0.0 JSON Schema of the specification's own npm package,
`@asyncapi/specs` (`make npm` installs it into tests/npm; without it this test is skipped,
and under CI=true it fails); each of the six topics is a channel at its default name,
received or sent as contract §1 says, keyed by the shop id; each event type of a topic's
JSON Schema is a message whose payload is the schema's definition of it, and its example
record is valid for that payload.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import best_match

from topics import asyncapi
from topics.codec import TopicKind
from topics.schema_check import TOPICS, load_schema

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "npm" / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0.json"
INPUTS = {kind.value for kind in TopicKind}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(asyncapi.DOCUMENT.read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="module")
def spec_validator() -> Draft7Validator:
    """The official AsyncAPI 3.0.0 JSON Schema (draft 07), from `@asyncapi/specs`."""
    if not SPEC.exists():
        missing = f"{SPEC.relative_to(ROOT)} is missing: `make npm` installs it (npm ci)"
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    assert spec["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    return Draft7Validator(spec)


def _pointer(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    if not isinstance(node, dict):
        return []
    own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
    return own + [ref for value in node.values() for ref in _refs(value)]


def _written_out(node: Any, defs: dict[str, Any]) -> Any:
    """A schema's `#/$defs/NAME` references replaced by the definitions (test's own copy)."""
    if isinstance(node, list):
        return [_written_out(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"$ref"}:
        return _written_out(defs[node["$ref"].removeprefix("#/$defs/")], defs)
    return {key: _written_out(value, defs) for key, value in node.items()}


# ------------------------------------------------------------------------------ staleness


def test_checked_in_document_is_what_the_command_writes_now() -> None:
    if asyncapi.DOCUMENT.read_text(encoding="utf-8") != asyncapi.render():
        pytest.fail(
            "docs/asyncapi.json is stale (it differs from what topics/ gives now): "
            "run `python -m topics.asyncapi` and commit the result"
        )


def test_command_writes_the_document_and_says_when_nothing_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "asyncapi.json"
    assert asyncapi.main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == asyncapi.render()
    assert asyncapi.main(["--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{out}: written", f"{out}: unchanged"]
    assert asyncapi.main(["--out", str(tmp_path / "no" / "such.json")]) == 1


# ------------------------------------------------------------------------------- validity


def test_document_is_valid_asyncapi_3_0(
    document: dict[str, Any], spec_validator: Draft7Validator
) -> None:
    error = best_match(spec_validator.iter_errors(document))
    assert error is None, f"{error.json_path}: {error.message[:500]}"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("operations", "receiveInquiries", "action"), "consume"),
        (("components", "schemas", "inquiry", "type"), "objekt"),
        (("components", "messages", "inquiry", "bindings", "kafka", "key"), {"type": 1}),
        (("channels", "inquiries", "bindings", "kafka", "partitions"), 0),
        (("channels", "inquiries", "address"), 7),
    ],
)
def test_the_validator_rejects_a_broken_document(
    document: dict[str, Any], spec_validator: Draft7Validator, path: tuple[str, ...], value: Any
) -> None:
    """The check above is not vacuous: it reaches operations, payloads and Kafka bindings."""
    broken = copy.deepcopy(document)
    _pointer(broken, "#/" + "/".join(path[:-1]))[path[-1]] = value
    assert not spec_validator.is_valid(broken)


def test_every_reference_in_the_document_resolves(document: dict[str, Any]) -> None:
    refs = _refs(document)
    assert len(refs) > 30
    for ref in refs:
        assert ref.startswith("#/"), ref
        _pointer(document, ref)


# --------------------------------------------------------------------------- completeness


def test_every_topic_is_a_channel_at_its_default_name(document: dict[str, Any]) -> None:
    assert list(document["channels"]) == list(TOPICS)
    assert len(TOPICS) == 6
    for topic, name in TOPICS.items():
        channel = document["channels"][topic]
        assert channel["address"] == name
        assert channel["bindings"]["kafka"]["topic"] == name
        assert f"`[kafka.topics] {topic}`" in channel["description"]
        assert channel["x-fenliu-record-key"] == "shop_id"


def test_fenliu_receives_the_inputs_and_sends_the_outputs(document: dict[str, Any]) -> None:
    operations = document["operations"]
    assert len(operations) == len(TOPICS)
    for topic in TOPICS:
        [operation] = [op for op in operations.values() if op["channel"]["$ref"].endswith(topic)]
        assert operation["channel"] == {"$ref": f"#/channels/{topic}"}
        assert operation["action"] == ("receive" if topic in INPUTS else "send")
        expected = [
            f"#/channels/{topic}/messages/{t}" for t in document["channels"][topic]["messages"]
        ]
        assert [m["$ref"] for m in operation["messages"]] == expected


@pytest.mark.parametrize("topic", list(TOPICS))
def test_every_event_type_is_a_message_with_its_schema_as_payload(
    document: dict[str, Any], topic: str
) -> None:
    schema = load_schema(topic)
    types = schema["properties"]["type"]["enum"]
    assert list(document["channels"][topic]["messages"]) == types
    for event_type in types:
        message = _pointer(document, document["channels"][topic]["messages"][event_type]["$ref"])
        payload = _pointer(document, message["payload"]["$ref"])
        assert payload == _written_out(schema["$defs"][event_type], schema["$defs"])
        assert payload["properties"]["type"]["const"] == event_type


@pytest.mark.parametrize("topic", list(TOPICS))
def test_every_message_is_keyed_by_the_shop_id(document: dict[str, Any], topic: str) -> None:
    for ref in document["channels"][topic]["messages"].values():
        key = _pointer(document, ref["$ref"])["bindings"]["kafka"]["key"]
        assert "string" in key["type"]
        assert key["description"].startswith("The shop id, UTF-8 encoded")
        assert "to partition `murmur2(key) mod partitions`" in key["description"]


def test_the_document_says_how_records_are_partitioned(document: dict[str, Any]) -> None:
    description = document["info"]["description"]
    for words in ("murmur2(key) mod partitions", "partitioner=murmur2_random", "dead-letter"):
        assert words in description
    for topic in INPUTS:
        assert "murmur2" in document["channels"][topic]["description"]


def test_every_example_is_valid_for_its_message_payload(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    types = [t for topic in TOPICS for t in load_schema(topic)["properties"]["type"]["enum"]]
    assert list(messages) == types
    assert len(types) == 11
    for event_type, message in messages.items():
        payload = _pointer(document, message["payload"]["$ref"])
        [example] = message["examples"]
        Draft7Validator(payload).validate(example["payload"])
        Draft202012Validator(payload).validate(example["payload"])
        assert example["payload"]["type"] == event_type


def test_generator_refuses_a_keyword_that_draft_07_reads_differently() -> None:
    with pytest.raises(ValueError, match="prefixItems"):
        asyncapi._inline({"type": "array", "prefixItems": [{"type": "string"}]}, {}, "here")
    with pytest.raises(ValueError, match="lone"):
        asyncapi._inline({"$ref": "#/$defs/ts", "description": "x"}, {"ts": {}}, "here")
