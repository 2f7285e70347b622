"""Check a Kafka record against its topic's JSON Schema, the way a producer would.

Not the hot path (the daemon uses `topics.codec.decode`): this is the reference check that
tests hold the decoder to, and that producers can run against their own records. It uses
the `jsonschema` library (a dev dependency, imported on first use) with the files in
`topics/schemas/`, plus the two record-level rules the schemas state as annotations:

- `x-fenliu-max-record-bytes`: the record value is at most this many bytes;
- `x-fenliu-record-key`: the record key (UTF-8) equals this field of the value; when the
  field is null (dead-letter records of keyless input) the record has no key.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any, Final

import orjson

from topics.codec import DEFAULT_TOPICS, TopicKind

__all__ = ["TOPICS", "check_record", "load_schema", "topic_name"]

TOPICS: Final[dict[str, str]] = {
    **{kind.value: name for kind, name in DEFAULT_TOPICS.items()},
    "assignments": "fenliu.assignments",
    "queue_updates": "fenliu.queue-updates",
    "dead_letter": "fenliu.dead-letter",
}
"""Logical topic (the `[kafka.topics]` key of contract §5) to default topic name, which is
also the stem of its schema file."""

_MAX_REASON_CHARS: Final = 300


def topic_name(topic: TopicKind | str) -> str:
    """The default topic name for a TopicKind, a logical topic key or a default topic name."""
    if topic in TOPICS:
        return TOPICS[topic]
    if topic in TOPICS.values():
        return topic
    raise ValueError(f"unknown topic {topic!r}; expected one of {', '.join(TOPICS.values())}")


@functools.cache
def load_schema(topic: TopicKind | str) -> dict[str, Any]:
    """The parsed JSON Schema of a topic (see `topic_name` for what `topic` may be)."""
    path = resources.files("topics") / "schemas" / f"{topic_name(topic)}.json"
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


@functools.cache
def _validator(topic: str) -> Any:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # noqa: PLC0415

    return Draft202012Validator(load_schema(topic))


def check_record(
    topic_kind_or_name: TopicKind | str, key: bytes | None, value: bytes
) -> str | None:
    """None if the record is valid for its topic, else a short reason."""
    topic = topic_name(topic_kind_or_name)
    schema = load_schema(topic)
    limit: int = schema["x-fenliu-max-record-bytes"]
    if len(value) > limit:
        return f"record value is {len(value)} bytes, over the limit of {limit}"
    try:
        instance = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return f"value is not valid JSON: {exc}"
    reason = _schema_reason(topic, instance)
    if reason is None and isinstance(instance, dict):
        reason = _key_reason(key, instance, schema["x-fenliu-record-key"])
    return reason


def _schema_reason(topic: str, instance: object) -> str | None:
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped]  # noqa: PLC0415

    error = best_match(_validator(topic).iter_errors(instance))
    if error is None:
        return None
    reason = f"{error.json_path}: {error.message}"
    return reason if len(reason) <= _MAX_REASON_CHARS else reason[: _MAX_REASON_CHARS - 3] + "..."


def _key_reason(key: bytes | None, instance: dict[str, object], field: str) -> str | None:
    expected = instance.get(field)
    if expected is None:
        return None if key is None else f"record key must be absent when {field} is null"
    if key is None:
        return f"record key is missing; it must equal {field}"
    if not isinstance(expected, str) or key != expected.encode():
        return f"record key {key!r} differs from {field} {expected!r}"
    return None
