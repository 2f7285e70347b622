"""`fenliu dead-letter replay`: dead-lettered input records back to their input topic (contract §8).

    fenliu dead-letter replay --config fenliu.toml [--since TIME] [--reason KIND ...] [--dry-run]

reads the dead-letter topic of fenliu.toml (from TIME, or from the beginning, up to its end
when the command started), keeps the `rejected` events whose `reason` is one of the KINDs
(all when none is given), and sends each original record (`raw`, keyed by `shop_id`) to its
`source_topic` on the partition it belongs on, `murmur2(key) mod partitions`. A record that
still does not decode, or whose shop is still not configured, is reported and not sent.
Each source record is sent at most once per replay, and keeps its event id: the daemon drops
a second copy as a duplicate, so replaying twice is harmless.

A dead letter whose `raw` (or key) was cut to fit (`raw_truncated`, `key_truncated`:
topics.excerpt) cannot be replayed from itself: the original record is fetched from its
`source_topic` at `partition` and `offset`, checked against the dead letter's size and
SHA-256, and replayed like any other. One whose original is gone (retention) or is not the
same record is reported as still invalid, with why, and not sent.

`plan_replay` (which records, where, and why not; `cut_sources`, which originals it needs)
and `summary` are pure; `replay` does the Kafka part with aiokafka. Exit 0 when done (dry
run included), 1 when Kafka failed, 2 for bad arguments or a bad configuration.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from daemon.config import FenliuConfig, load_config_or_report
from daemon.service.clients import (
    TopicsAdminError,
    kafka_client_kwargs,
    make_producer,
    partition_counts,
)
from daemon.service.kafka import TopicMap, home_partition
from topics.codec import DecodeError, TopicKind, decode
from topics.events import RejectKind

KINDS: tuple[RejectKind, ...] = get_args(RejectKind)
FETCH_WAIT_S = 5.0  # fetching an original record: how long to wait for its partition
EXIT_DONE, EXIT_KAFKA, EXIT_USAGE = 0, 1, 2

# Dead letters written before `rejected` carried its `reason`: the kind, told by the sentence.
_LEGACY_MARKS: tuple[tuple[str, RejectKind], ...] = (
    ("belongs on partition", "misrouted"),
    ("is not configured", "unknown_shop"),
)


Source = tuple[str, int, int]  # where a record was: topic, partition, offset
Original = tuple[bytes | None, bytes | None]  # a record fetched from its source: key, value


@dataclass(frozen=True, slots=True)
class Resend:
    """One original record to send again: where it goes and what it is."""

    source: str  # the dead letter's id, "rej:<topic>:<partition>:<offset>"
    topic: str
    partition: int
    key: bytes
    value: bytes
    event_id: str


@dataclass(frozen=True, slots=True)
class StillInvalid:
    """A selected dead letter whose record cannot be sent: `why` says what is still wrong."""

    source: str
    why: str


@dataclass(slots=True)
class Plan:
    """What a replay does with the dead letters it read."""

    read: int = 0
    selected: int = 0
    resend: list[Resend] = field(default_factory=list)
    still_invalid: list[StillInvalid] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # why -> how many


def kind_of(letter: Mapping[str, Any]) -> RejectKind | None:
    """The reason kind of a `rejected` event; for an older one, told by its error sentence."""
    reason = letter.get("reason")
    if reason in KINDS:
        kind: RejectKind = reason
        return kind
    error = str(letter.get("error", ""))
    return next((kind for mark, kind in _LEGACY_MARKS if mark in error), None)


def _letter(value: bytes | None) -> dict[str, Any] | None:
    """A dead-letter record's value as a `rejected` event with its source, or None."""
    try:
        letter = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(letter, dict) or letter.get("type") != "rejected":
        return None
    wanted = (("source_topic", str), ("partition", int), ("offset", int), ("raw", str))
    if not all(isinstance(letter.get(name), kind) for name, kind in wanted):
        return None
    return letter


def _original(letter: Mapping[str, Any]) -> bytes:
    raw: str = letter["raw"]
    if letter.get("raw_encoding") == "base64":
        return base64.b64decode(raw, validate=True)
    return raw.encode()


def _cut(letter: Mapping[str, Any]) -> bool:
    """Whether a dead letter holds only an excerpt of its record's value or key."""
    return letter.get("raw_truncated") is True or letter.get("key_truncated") is True


def _source(letter: Mapping[str, Any]) -> Source:
    return letter["source_topic"], letter["partition"], letter["offset"]


def cut_sources(values: Iterable[bytes | None], *, kinds: Collection[str]) -> set[Source]:
    """Where the records of the selected dead letters that hold only an excerpt are: what
    `replay` fetches for `plan_replay`."""
    letters = (_letter(v) for v in values)
    return {
        _source(letter)
        for letter in letters
        if letter is not None and _cut(letter) and (not kinds or kind_of(letter) in kinds)
    }


def plan_replay(
    values: Iterable[bytes | None],
    *,
    kinds: Collection[str],
    inputs: Mapping[str, TopicKind],
    partitions: Mapping[str, int],
    shops: Collection[str],
    originals: Mapping[Source, Original] | None = None,
) -> Plan:
    """Which dead letters to send again (`kinds` selects; empty selects all), where, and why
    the others are not: still invalid (reported) or skipped (counted by why). A dead letter
    that holds only an excerpt is replayed from its record in `originals` (fetched from its
    source), if there and the same record."""
    plan = Plan()
    sources: set[str] = set()
    events: set[tuple[str, str]] = set()
    for value in values:
        plan.read += 1
        letter = _letter(value)
        if letter is None:
            plan.skipped["not a rejected event"] += 1
            continue
        if kinds and kind_of(letter) not in kinds:
            plan.skipped[f"reason {kind_of(letter) or 'unknown'} not selected"] += 1
            continue
        plan.selected += 1
        topic = letter["source_topic"]
        source = f"rej:{topic}:{letter['partition']}:{letter['offset']}"
        if source in sources:
            plan.skipped["the same record dead-lettered again"] += 1
            continue
        sources.add(source)
        outcome = _check(source, letter, inputs, partitions, shops, originals or {})
        if isinstance(outcome, StillInvalid):
            plan.still_invalid.append(outcome)
        elif (topic, outcome.event_id) in events:
            plan.skipped["an event id already re-sent"] += 1
        else:
            events.add((topic, outcome.event_id))
            plan.resend.append(outcome)
    return plan


def _check(
    source: str,
    letter: Mapping[str, Any],
    inputs: Mapping[str, TopicKind],
    partitions: Mapping[str, int],
    shops: Collection[str],
    originals: Mapping[Source, Original],
) -> Resend | StillInvalid:
    topic: str = letter["source_topic"]
    if topic not in inputs or not partitions.get(topic):
        return StillInvalid(source, f"{topic} is not an input topic of the configuration")
    record = _record(letter, originals)
    if isinstance(record, str):
        return StillInvalid(source, record)
    key, value = record
    try:
        event = decode(value, key, inputs[topic])
    except DecodeError as exc:
        return StillInvalid(source, str(exc))
    if event.shop_id not in shops:
        return StillInvalid(source, f"shop {event.shop_id!r} is still not configured")
    where = home_partition(key, partitions[topic])
    return Resend(source, topic, where, key, value, event.id)


def _record(
    letter: Mapping[str, Any], originals: Mapping[Source, Original]
) -> tuple[bytes, bytes] | str:
    """The key and value to send again, or why there are none: from the dead letter itself,
    or, when it holds only an excerpt, from the original fetched from its source."""
    if _cut(letter):
        return _fetched(letter, originals)
    shop_id = letter.get("shop_id")
    if not isinstance(shop_id, str):
        return "the record had no UTF-8 key"
    try:
        return shop_id.encode(), _original(letter)
    except binascii.Error:
        return "raw is not valid base64"


def _fetched(
    letter: Mapping[str, Any], originals: Mapping[Source, Original]
) -> tuple[bytes, bytes] | str:
    """The original of a dead letter that holds only an excerpt, if it is the same record."""
    topic, part, offset = where = _source(letter)
    found = originals.get(where)
    if found is None:
        return (
            f"the dead letter holds only an excerpt, and the record is no longer in {topic} "
            f"partition {part} at offset {offset}"
        )
    key, value = found
    for what, original, cut in (("value", value, "raw"), ("key", key, "key")):
        told = (letter.get(f"{cut}_size"), letter.get(f"{cut}_sha256"))
        if letter.get(f"{cut}_truncated") is True and _fingerprint(original) != told:
            return (
                f"the record at {topic} partition {part} offset {offset} is not the one "
                f"dead-lettered (its {what} differs)"
            )
    if key is None:
        return "the record had no key"
    return key, value or b""


def _fingerprint(data: bytes | None) -> tuple[int, str] | None:
    return None if data is None else (len(data), hashlib.sha256(data).hexdigest())


def summary(plan: Plan, *, dead_letter_topic: str, dry_run: bool) -> list[str]:
    """The lines the command prints: what was read, selected, (would be) re-sent, still
    invalid (each with why) and skipped (counted by why)."""
    verb = "would re-send" if dry_run else "re-sent"
    lines = [f"read {plan.read} from {dead_letter_topic}", f"selected {plan.selected}"]
    if dry_run:
        lines += [f"  {r.source} -> {r.topic} partition {r.partition}" for r in plan.resend]
    lines.append(f"{verb} {len(plan.resend)}")
    lines.append(f"still invalid {len(plan.still_invalid)}")
    lines += [f"  {bad.source}: {bad.why}" for bad in plan.still_invalid]
    lines.append(f"skipped {sum(plan.skipped.values())}")
    lines += [f"  {n} {why}" for why, n in sorted(plan.skipped.items())]
    return lines


def parse_since(text: str) -> int:
    """`--since`: an ISO 8601 time (UTC when it names no zone) or epoch milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is neither an ISO 8601 time nor epoch milliseconds") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


# --- Kafka -----------------------------------------------------------------------------------


async def _read(config: FenliuConfig, since: int | None, count: int) -> list[bytes | None]:
    """The dead-letter topic's record values from `since` (or the beginning) to (at least)
    its end as it is now."""
    kafka = config.kafka
    topic = kafka.topics.dead_letter
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kafka_client_kwargs(kafka),
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(parts)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(parts)
        await _seek(consumer, parts, ends, since)
        values: list[bytes | None] = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            # Every record fetched counts, even past the end read at the start: some brokers
            # (Tansu 0.6) answer the end as the last batch's first offset + 1. And the time
            # is checked per record: some (Tansu 0.6 again) answer a time with offset 0.
            values += [
                r.value
                for records in batch.values()
                for r in records
                if since is None or r.timestamp >= since
            ]
        return values
    finally:
        await consumer.stop()


async def _seek(
    consumer: AIOKafkaConsumer,
    parts: Sequence[TopicPartition],
    ends: Mapping[TopicPartition, int],
    since: int | None,
) -> None:
    """Explicit offsets: `seek_to_beginning` right after `assign` can lose the race with the
    assignment's own reset (aiokafka), and start at the end."""
    if since is None:
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(parts)
    else:
        found = await consumer.offsets_for_times(dict.fromkeys(parts, since))
        starts = {tp: at.offset if (at := found.get(tp)) else ends[tp] for tp in parts}
    for tp in parts:
        consumer.seek(tp, starts[tp])


async def _fetch(config: FenliuConfig, sources: Collection[Source]) -> dict[Source, Original]:
    """The records at these places (key, value), those that are still there."""
    kafka = config.kafka
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kafka_client_kwargs(kafka),
    )
    await consumer.start()
    found: dict[Source, Original] = {}
    try:
        for topic, part, offset in sorted(sources):
            tp = TopicPartition(topic, part)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            deadline = time.monotonic() + FETCH_WAIT_S
            while time.monotonic() < deadline:  # a record past it: the original is gone
                records = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
                if records:
                    first = records[0]
                    if first.offset == offset:
                        found[(topic, part, offset)] = (first.key, first.value)
                    break
        return found
    finally:
        await consumer.stop()


async def replay(
    config: FenliuConfig, *, since: int | None, kinds: Collection[str], dry_run: bool
) -> Plan:
    """Read, plan and (unless `dry_run`) send; the plan says what was done."""
    kafka = config.kafka
    topics = TopicMap(kafka.topics)
    security = kafka_client_kwargs(kafka)
    names = [*topics.inputs, kafka.topics.dead_letter]
    counts = await partition_counts(kafka.bootstrap_servers, names, security)
    dead = counts.get(kafka.topics.dead_letter, 0)
    values = await _read(config, since, dead) if dead else []
    wanted = {s for s in cut_sources(values, kinds=kinds) if s[0] in topics.inputs}
    originals = await _fetch(config, wanted) if wanted else {}
    plan = plan_replay(
        values, kinds=kinds, inputs=topics.inputs, partitions=counts, shops=config.shop_configs,
        originals=originals,
    )  # fmt: skip
    if dry_run or not plan.resend:
        return plan
    producer = make_producer(kafka, security)
    await producer.start()
    try:
        sent = [
            await producer.send(r.topic, r.value, key=r.key, partition=r.partition)
            for r in plan.resend
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return plan


def replay_command(
    config_path: Path, *, since: str | None, kinds: Sequence[str], dry_run: bool
) -> int:
    """`fenliu dead-letter replay`: the summary on stdout; problems on stderr."""
    try:
        since_ms = None if since is None else parse_since(since)
    except ValueError as exc:
        print(f"fenliu dead-letter replay: --since: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = load_config_or_report(config_path)
    if config is None:
        return EXIT_USAGE
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    try:
        plan = asyncio.run(replay(config, since=since_ms, kinds=set(kinds), dry_run=dry_run))
    except (TopicsAdminError, KafkaError) as exc:
        print(f"fenliu dead-letter replay: {exc}", file=sys.stderr)
        return EXIT_KAFKA
    topic = config.kafka.topics.dead_letter
    print("\n".join(summary(plan, dead_letter_topic=topic, dry_run=dry_run)))
    return EXIT_DONE
