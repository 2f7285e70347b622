"""The abuse soak: one real `fenliu run` fed normal traffic, every kind of bad record and an
HTTP flood at once, then judged (contract §1.2, 1.3 and 6; issue 23).

Used by `bench/soak.py --minutes N` (30 by default; the figures go in BENCHMARKS.md) and by
`tests/system/test_soak.py` (two minutes). `run_soak(plan, ...)`:

- creates the six topics and starts one daemon (tests/e2e.py's `DaemonProcess`, its stdout
  and stderr in `daemon.log`) for the four shops of the chaos suite (tests/chaos.py); a
  watcher restarts it, and counts a crash, whenever it exits without being asked to;
- finds the broker's limit on a record value (`probe_limit`, on topics of its own, up to
  `plan.probe_ceiling`);
- drives, for `plan.seconds`: the chaos suite's `Driver` (inquiries, messages, leaves,
  orders, agent status flips; all valid); `BadProducer`, `plan.bad_per_s` records a second of
  every kind in `BAD_KINDS` on each input topic in turn and, every `plan.big_every_s`, a big
  one (`BIG_KINDS`: a 100 KB key, 200 KB and 900 KB values, one just under Kafka's default
  1 MiB and one just under the broker's limit) on the next topic; a record the broker
  refuses is no input and is only counted; the HTTP flood (tests/flood.py, its own process):
  `plan.flood_clients` keep-alive clients on /metrics and /api/*; the daemon's RSS
  (/proc/PID/status, VmRSS) every `plan.rss_every_s`; a progress line every
  `plan.progress_every_s`;
- then puts every agent online, has every buyer answered, stops the flood, waits until
  nothing is open or queued and every bad record has its dead letter (or nothing moves),
  reads every output topic from the beginning and judges: crashes; every bad record
  dead-lettered (matched by the dead letter's `source_topic`, `partition` and `offset`)
  and no dead letter for a good record; contract §6 over the good traffic (tests/chaos_check.py's
  `check`, whose `lost` says every good inquiry was decided); each dead letter's `raw`
  within 16 KiB of the original (`raw_truncated` when cut) and its record within
  `DEAD_LETTER_BOUND`; the daemon's
  log: lines, the longest, lines about rejected records against bad records sent; RSS from
  1/6 of the drive (minute 5 of 30) to its end, each the median of a minute of samples.

`SoakResult.targets()` lists every target with its value and whether it was met (the bench
prints them as a table, the test asserts them); RSS is a target of the bench only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from daemon.config import TopicsConfig
from daemon.service.kafka import home_partition
from daemon.tools.topics_admin import create_topics
from tests.chaos import (
    SHOP_CONFIGS,
    SHOP_FILES,
    ChaosPlan,
    Driver,
    Fleet,
    OutputReader,
    RunFacts,
    _settle,
    wall_ms,
)
from tests.chaos_check import Verdict, check
from tests.e2e import REPO, DaemonProcess, write_config
from tests.flood import read_stats

KIB, MIB = 1024, 1024 * 1024
RAW_LIMIT = 16 * KIB  # contract §1.3: a dead letter's raw (and echoed key) holds at most this
DEAD_LETTER_BOUND = 128 * KIB  # key + value of one dead letter: a few 16 KiB excerpts, and words
LOG_LINE_LIMIT = 4 * KIB  # no log line longer (issue 23)
LOG_RATIO = 5  # at least this many bad records per log line about rejected records
RSS_GROWTH = 1.10  # RSS at the end of the drive / RSS at 1/6 of it
RSS_SPAN_S = 60.0  # each of the two RSS figures is the median of this long (Report.rss_window)
KAFKA_DEFAULT_LIMIT = 1_048_588  # Kafka's message.max.bytes (a record batch, overhead included)

SHOP = "chaos-a"  # the configured shop most bad records pretend to be
INPUTS = ("inquiries", "messages", "agent_status")  # TopicsConfig fields of the input topics

Progress = Callable[[str], None]


# ------------------------------------------------------------------------------ bad records


@dataclass(frozen=True)
class BadRecord:
    """One record to produce: `partition` None lets the producer pick (murmur2 of the key)."""

    kind: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None


def _body(topic: str, n: int, shop: str = SHOP) -> dict[str, Any]:
    """A valid event for `topic` (a TopicsConfig field) that no real buyer or agent sends."""
    envelope = {"id": f"soak-bad-{n}", "shop_id": shop, "ts": wall_ms()}
    if topic == "inquiries":
        return {"type": "inquiry", **envelope, "buyer_id": f"soak-ghost-{n % 7}"}
    if topic == "messages":
        return {"type": "message", **envelope, "buyer_id": f"soak-ghost-{n % 7}", "from": "buyer"}
    return {"type": "agent_status", **envelope, "agent_id": "a1", "status": "online"}


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj)


class BadRecords:
    """Makes every kind of bad record for each input topic (contract §1.2, "Anything else"),
    seeded; `partitions` is the input topics' partition count (for the misrouted ones) and
    `limit` the largest value the broker takes."""

    def __init__(self, seed: int, partitions: int, limit: int) -> None:
        self.rng = random.Random(seed)
        self.partitions, self.limit = partitions, limit
        self._n = itertools.count(1)  # numbers the records, for their ids
        self.small: dict[str, Callable[[str, int], BadRecord]] = {
            "not_json": self.not_json,
            "not_object": self.not_object,
            "missing_field": self.missing_field,
            "mistyped_field": self.mistyped_field,
            "unknown_type": self.unknown_type,
            "unknown_shop": self.unknown_shop,
            "key_not_shop_id": self.key_not_shop_id,
            "unconfigured_agent": self.unconfigured_agent,
            "misrouted": self.misrouted,
            "non_utf8_value": self.non_utf8_value,
            "non_utf8_key": self.non_utf8_key,
            "control_characters": self.control_characters,
            "no_key": self.no_key,
            "null_value": self.null_value,
            "deep_nesting": self.deep_nesting,
        }
        self.big: dict[str, Callable[[str, int], BadRecord]] = {
            "key_100k": self.key_100k,
            "value_200k": lambda t, n: self.sized("value_200k", t, n, 200_000),
            "value_900k": lambda t, n: self.sized("value_900k", t, n, 900_000),
            "value_kafka_limit": lambda t, n: self.sized(
                "value_kafka_limit", t, n, KAFKA_DEFAULT_LIMIT - 2 * KIB
            ),
            "value_broker_limit": lambda t, n: self.sized(
                "value_broker_limit", t, n, self.limit - 2 * KIB
            ),
        }

    def stream(self, big: bool) -> Iterator[tuple[str, BadRecord]]:
        """(input topic field, record) forever: every small kind (or every big one) on every
        input topic in turn."""
        makers = self.big if big else self.small
        for kind, topic in itertools.cycle([(k, t) for k in makers for t in INPUTS]):
            yield topic, makers[kind](topic, next(self._n))

    # --- the small kinds

    def not_json(self, topic: str, n: int) -> BadRecord:
        values = (b"not json at all {", b'{"type": "inquiry", "id": ', b"\x00\x01\x02", b"")
        return BadRecord("not_json", SHOP.encode(), values[n % len(values)])

    def not_object(self, topic: str, n: int) -> BadRecord:
        values = (b"[1, 2, 3]", b'"a string"', b"42", b"null", b"true")
        return BadRecord("not_object", SHOP.encode(), values[n % len(values)])

    def missing_field(self, topic: str, n: int) -> BadRecord:
        body = _body(topic, n)
        names = list(body)
        del body[names[n % len(names)]]
        return BadRecord("missing_field", SHOP.encode(), _json(body))

    def mistyped_field(self, topic: str, n: int) -> BadRecord:
        body = _body(topic, n)
        wrong: list[tuple[str, Any]] = [
            ("ts", "yesterday"), ("ts", -5), ("ts", 1.5), ("ts", True), ("id", 12345),
            ("id", "x" * 300), ("shop_id", [SHOP]), ("type", 7),
        ]  # fmt: skip
        name, value = wrong[n % len(wrong)]
        body[name] = value
        if topic == "agent_status" and n % 3 == 0:
            body["status"] = "on_holiday"
        return BadRecord("mistyped_field", SHOP.encode(), _json(body))

    def unknown_type(self, topic: str, n: int) -> BadRecord:
        body = _body(topic, n)
        body["type"] = ("refund", "message" if topic != "messages" else "inquiry", "")[n % 3]
        return BadRecord("unknown_type", SHOP.encode(), _json(body))

    def unknown_shop(self, topic: str, n: int) -> BadRecord:
        shop = f"soak-nosuch-{n % 5}"
        return BadRecord("unknown_shop", shop.encode(), _json(_body(topic, n, shop)))

    def key_not_shop_id(self, topic: str, n: int) -> BadRecord:
        key = (b"chaos-b", b"someone-else", b"chaos-a ")[n % 3]
        return BadRecord("key_not_shop_id", key, _json(_body(topic, n)))

    def unconfigured_agent(self, topic: str, n: int) -> BadRecord:
        body = _body(topic, n)
        if topic == "inquiries":
            body.update(type="transfer", to_agent="soak-ghost-agent")
        elif topic == "messages":
            body.update({"from": "agent", "agent_id": "soak-ghost-agent"})
        else:
            body["agent_id"] = "soak-ghost-agent"
        return BadRecord("unconfigured_agent", SHOP.encode(), _json(body))

    def misrouted(self, topic: str, n: int) -> BadRecord:
        home = home_partition(SHOP.encode(), self.partitions)
        elsewhere = (home + 1 + n % (self.partitions - 1)) % self.partitions
        return BadRecord("misrouted", SHOP.encode(), _json(_body(topic, n)), elsewhere)

    def non_utf8_value(self, topic: str, n: int) -> BadRecord:
        text = _json(_body(topic, n))
        value = b"\xff\xfe" + text if n % 2 else text.replace(b"soak-ghost", b"soak-caf\xe9")
        if value == text:  # agent_status bodies name no ghost buyer
            value = text[:-1] + b', "note": "caf\xe9"}'
        return BadRecord("non_utf8_value", SHOP.encode(), value)

    def non_utf8_key(self, topic: str, n: int) -> BadRecord:
        return BadRecord("non_utf8_key", b"\xff\xfe" + SHOP.encode(), _json(_body(topic, n)))

    def control_characters(self, topic: str, n: int) -> BadRecord:
        if n % 2:  # raw control bytes inside a JSON string: not JSON
            value = _json(_body(topic, n)).replace(b"soak-bad", b"soak\x1b[2J\x00\x07bad")
            return BadRecord("control_characters", SHOP.encode(), value)
        shop = "soak\x1b[31m\x00\r\nFAKE LOG LINE\x07"  # valid JSON, an unknown (evil) shop
        return BadRecord("control_characters", shop.encode(), _json(_body(topic, n, shop)))

    def no_key(self, topic: str, n: int) -> BadRecord:
        return BadRecord("no_key", None, _json(_body(topic, n)))

    def null_value(self, topic: str, n: int) -> BadRecord:
        return BadRecord("null_value", SHOP.encode(), None)

    def deep_nesting(self, topic: str, n: int) -> BadRecord:
        depth = 30_000  # far past any parser's nesting limit, within 64 KiB
        return BadRecord("deep_nesting", SHOP.encode(), b"[" * depth + b"]" * depth * (n % 2))

    # --- the big kinds

    def key_100k(self, topic: str, n: int) -> BadRecord:
        key = (b"k" * 100_000) if n % 2 else self.rng.randbytes(100_000)
        return BadRecord("key_100k", key, _json(_body(topic, n)))

    def sized(self, kind: str, topic: str, n: int, size: int) -> BadRecord:
        """A value of `size` bytes: JSON text (a huge buyer id) or, every other time, binary."""
        if n % 2:
            return BadRecord(kind, SHOP.encode(), self.rng.randbytes(size))
        body = _body(topic, n)
        text = _json(body)
        filler = size - len(text) - len(',"pad":""')
        body["pad"] = "p" * max(filler, 0)
        return BadRecord(kind, SHOP.encode(), _json(body))


def _kinds() -> tuple[tuple[str, ...], tuple[str, ...]]:
    maker = BadRecords(0, 2, MIB)
    return tuple(maker.small), tuple(maker.big)


BAD_KINDS, BIG_KINDS = _kinds()


@dataclass
class Sent:
    """Where a bad record landed."""

    kind: str
    topic: str
    size: int  # key + value bytes
    value_size: int


class BadProducer:
    """Produces `BadRecords` at a steady rate and remembers where each one landed (its dead
    letter's id); a record the broker refuses is counted in `refused`, not expected back."""

    def __init__(self, bootstrap: str, topics: TopicsConfig, records: BadRecords) -> None:
        self.topics, self.records = topics, records
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
            max_request_size=records.limit + 4 * MIB, request_timeout_ms=60_000,
        )  # fmt: skip
        self.sent: dict[str, Sent] = {}  # "topic:partition:offset" -> the record
        self.produced: Counter[str] = Counter()  # by kind
        self.refused: Counter[str] = Counter()  # by kind: the broker's "no"
        self.refusals: list[str] = []
        self.bytes = 0
        self.stopping = False

    async def run(self, rate: float, big_every_s: float) -> None:
        """Produce until `stopping`: small records, `rate` a second, and a big one every
        `big_every_s` seconds (never, if 0)."""
        small, big = self.records.stream(big=False), self.records.stream(big=True)
        await self.producer.start()
        try:
            next_small = next_big = time.monotonic()
            while not self.stopping:
                now = time.monotonic()
                if big_every_s and now >= next_big:
                    topic, record = next(big)
                    next_big = max(next_big + big_every_s, now)
                else:
                    topic, record = next(small)
                    next_small = max(next_small + 1 / rate, now - 1.0)  # no burst after a lag
                await self.produce(getattr(self.topics, topic), record)
                due = min(next_small, next_big) if big_every_s else next_small
                await asyncio.sleep(max(0.0, due - time.monotonic()))
        finally:
            await self.producer.stop()

    async def produce(self, topic: str, record: BadRecord) -> None:
        size = len(record.key or b"") + len(record.value or b"")
        try:
            sending = await self.producer.send(
                topic, record.value, key=record.key, partition=record.partition
            )
            meta = await sending
        except KafkaError as exc:
            self.refused[record.kind] += 1
            if len(self.refusals) < 20:
                self.refusals.append(f"{record.kind} ({size} B): {type(exc).__name__}: {exc}")
            return
        self.produced[record.kind] += 1
        self.bytes += size
        where = f"{topic}:{meta.partition}:{meta.offset}"
        self.sent[where] = Sent(record.kind, topic, size, len(record.value or b""))


async def probe_limit(bootstrap: str, ceiling: int) -> tuple[int, bool]:
    """The largest record value the broker takes (to 64 KiB), searched up to `ceiling`, on
    topics of its own; and whether it refused anything at all (False: `ceiling` is only our
    own limit)."""
    topics = TopicsConfig(
        **{f: f"soakprobe-{uuid.uuid4().hex[:8]}.{f}" for f in TopicsConfig.model_fields}
    )
    await create_topics(bootstrap, topics, partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
        max_request_size=ceiling + MIB, request_timeout_ms=60_000,
    )  # fmt: skip
    await producer.start()

    async def takes(size: int) -> bool:
        try:
            await (await producer.send(topics.inquiries, b"p" * size, key=b"probe"))
        except KafkaError:
            return False
        return True

    try:
        good, bad = 0, None
        size = MIB // 2
        while size <= ceiling:
            if not await takes(size):
                bad = size
                break
            good, size = size, size * 2
        if bad is None:
            if good < ceiling and await takes(ceiling):
                good = ceiling
            return good, False
        while bad - good > 64 * KIB:
            middle = (good + bad) // 2
            good, bad = (middle, bad) if await takes(middle) else (good, middle)
        return good, True
    finally:
        await producer.stop()


# ---------------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class DeadLetter:
    """What the judge keeps of one dead letter (never its raw)."""

    source: str  # where the record it refused is: "topic:partition:offset"
    id: str
    raw_bytes: int  # bytes of the original that `raw` holds
    key_bytes: int  # bytes of the original key echoed, if any
    record_bytes: int  # the dead letter's own key + value
    truncated: bool
    error: str


class SoakReader(OutputReader):
    """The chaos suite's reader of the output topics, keeping of the dead-letter topic only a
    `DeadLetter` summary per record (its `outputs` are the routing outputs)."""

    def __init__(self, bootstrap: str, topics: TopicsConfig) -> None:
        super().__init__(bootstrap, topics)
        self.dead_topic = topics.dead_letter
        self.dead: dict[str, DeadLetter] = {}  # by source
        self.dead_records = 0  # dead letters read, duplicates included
        self.dead_bytes = 0  # their keys and values

    async def poll(self, timeout_ms: int = 200) -> int:
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)
        for tp, records in batch.items():
            if tp.topic == self.dead_topic:
                for record in records:
                    self.note(record)
            else:
                self.records[tp].extend(orjson.loads(r.value) for r in records)
        return sum(len(r) for r in batch.values())

    def note(self, record: ConsumerRecord[Any, Any]) -> None:
        size = len(record.key or b"") + len(record.value or b"")
        self.dead_records += 1
        self.dead_bytes += size
        event = orjson.loads(record.value)
        source = f"{event.get('source_topic')}:{event.get('partition')}:{event.get('offset')}"
        self.dead.setdefault(
            source,
            DeadLetter(
                source=source,
                id=str(event.get("id")),
                raw_bytes=_original_bytes(event.get("raw", ""), event.get("raw_encoding")),
                key_bytes=_original_bytes(event.get("key") or "", event.get("key_encoding")),
                record_bytes=size,
                truncated=bool(event.get("raw_truncated")),
                error=str(event.get("error", ""))[:300],
            ),
        )


def _original_bytes(text: str, encoding: str | None) -> int:
    if encoding == "base64":
        return len(text) * 3 // 4 - text[-2:].count("=")
    return len(text.encode())


# ------------------------------------------------------------------------ watchers: RSS, logs


@dataclass
class RssSamples:
    """(seconds since the drive started, VmRSS in KiB, pid) every few seconds; and the CPU
    seconds the daemon used, per process."""

    samples: list[tuple[float, int, int]] = field(default_factory=list)
    cpu_s: dict[int, float] = field(default_factory=dict)  # pid -> user + system seconds

    async def run(self, daemon: DaemonProcess, every_s: float, started: float) -> None:
        while True:
            if daemon.proc is not None and daemon.proc.poll() is None:
                pid = daemon.proc.pid
                rss, cpu = vm_rss_kib(pid), cpu_seconds(pid)
                if rss is not None:
                    self.samples.append((time.monotonic() - started, rss, pid))
                if cpu is not None:
                    self.cpu_s[pid] = cpu
            await asyncio.sleep(every_s)

    def median(self, start: float, end: float) -> int | None:
        """The median RSS (KiB) of the samples from `start` to `end` seconds, None unless
        there are some and one process took them all (the daemon was not restarted)."""
        within = [s for s in self.samples if start <= s[0] <= end]
        if not within or len({s[2] for s in within}) > 1:
            return None
        return int(statistics.median(s[1] for s in within))


def vm_rss_kib(pid: int) -> int | None:
    """A process's resident set (VmRSS, KiB), None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float | None:
    """A process's CPU time so far (user + system, /proc/PID/stat), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class LogFigures:
    """What the daemon wrote to its log (stdout and stderr)."""

    lines: int = 0
    bytes: int = 0
    longest: int = 0
    longest_event: str = ""
    rejection_lines: int = 0  # lines whose event is about a rejected or misrouted record
    not_json: int = 0
    events: Counter[str] = field(default_factory=Counter)


def read_log(path: Path) -> LogFigures:
    """Count the lines of a daemon log, the longest, and those about rejected records."""
    figures = LogFigures()
    if not path.exists():
        return figures
    with path.open("rb") as log:
        for raw in log:
            line = raw.rstrip(b"\n")
            figures.lines += 1
            figures.bytes += len(raw)
            try:
                event = str(orjson.loads(line).get("event", "?"))
            except (orjson.JSONDecodeError, AttributeError):
                figures.not_json += 1
                event = "(not JSON)"
            figures.events[event[:60]] += 1
            if len(line) > figures.longest:
                figures.longest, figures.longest_event = len(line), event[:60]
            if "reject" in event or "misrouted" in event:
                figures.rejection_lines += 1
    return figures


# -------------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class SoakPlan:
    """What to do: drive `seconds` of every traffic at once (module docstring)."""

    seconds: float = 1800.0
    seed: int = 1
    partitions: int = 4
    bad_per_s: float = 20.0  # small bad records a second, all kinds and topics in turn
    big_every_s: float = 5.0  # and a big one every so many seconds (0: none)
    flood_clients: int = 16
    flood_rate: float = 200.0  # HTTP requests a second over all clients; 0 = unpaced
    api_every: int = 10  # one request in this many goes to /api/*
    rss_every_s: float = 5.0
    progress_every_s: float = 30.0
    probe_ceiling: int = 8 * MIB  # the largest record the limit probe tries
    settle_s: float = 90.0  # longest wait, after the drive, for outputs and dead letters


@dataclass
class Target:
    """One target of the soak: its value for a person, and whether it was met."""

    name: str
    value: str
    met: bool


@dataclass
class SoakResult:
    """Everything a soak measured; `targets()` judges it."""

    plan: SoakPlan
    verdict: Verdict
    facts: RunFacts
    broker_limit: int
    broker_refuses: bool
    produced: Counter[str]
    refused: Counter[str]
    refusals: list[str]
    bad_bytes: int
    sent: dict[str, Sent]  # every bad record the broker took, by "topic:partition:offset"
    missing: dict[str, int]  # bad records without a dead letter, by kind
    missing_examples: list[str]
    unexpected: list[DeadLetter]  # dead letters of records that were not bad
    dead: list[DeadLetter]
    dead_records: int
    dead_bytes: int
    good_events: int
    rss: RssSamples
    drive_s: float
    log: LogFigures
    flood: dict[str, Any]
    exit_code: int

    @property
    def bad(self) -> int:
        return sum(self.produced.values())

    def rss_window(self) -> tuple[int, int] | None:
        """RSS (KiB) at 1/6 of the drive and at its end, by the same process; None when the
        daemon was restarted in between or not sampled. Each is the median of the samples of
        the minute around 1/6 and of the last minute (a sixtieth of the drive when shorter):
        a big record in flight lifts RSS for a few seconds (an 8 MiB value read, decoded and
        dead-lettered) and a single sample taken then would be that record, not growth."""
        span = min(RSS_SPAN_S, self.drive_s / 60)
        first = self.rss.median(self.drive_s / 6 - span / 2, self.drive_s / 6 + span / 2)
        last = self.rss.median(self.drive_s - span, self.drive_s)
        if first is None or last is None:
            return None
        return first, last

    def targets(self, *, rss: bool = True) -> list[Target]:
        v, dead = self.verdict, self.dead
        counts = v.counts()
        audit = {k: n for k, n in counts.items() if n and k != "crashed"}
        raw_max = max((max(d.raw_bytes, d.key_bytes) for d in dead), default=0)
        big_record = max((d.record_bytes for d in dead), default=0)
        uncut = [
            d.source
            for d in dead
            if d.source in self.sent
            and self.sent[d.source].value_size > RAW_LIMIT
            and not d.truncated
        ]
        bad = self.bad
        out = [
            Target("daemon crashes", f"{len(self.facts.crashes)}", not self.facts.crashes),
            Target("SIGTERM at the end: exit 0", f"exit {self.exit_code}", self.exit_code == 0),
            Target(
                "bad records dead-lettered",
                f"{bad - sum(self.missing.values())} of {bad}"
                + (f" (missing {dict(self.missing)})" if self.missing else ""),
                bad > 0 and not self.missing,
            ),
            Target(
                "dead letters of good records",
                f"{len(self.unexpected)}",
                not self.unexpected,
            ),
            Target("good inquiries lost", f"{counts['lost']}", counts["lost"] == 0),
            Target(
                "contract §6 audit",
                "clean" if not audit else f"violations {audit}",
                not audit,
            ),
            Target(
                "largest raw in a dead letter",
                f"{raw_max} B (≤ {RAW_LIMIT})",
                raw_max <= RAW_LIMIT,
            ),
            Target(
                "cut dead letters say so (raw_truncated)",
                f"{len(uncut)} not" + (f" (e.g. {uncut[0]})" if uncut else ""),
                not uncut,
            ),
            Target(
                "largest dead letter (key + value)",
                f"{big_record} B (≤ {DEAD_LETTER_BOUND}); {self.dead_records} read "
                f"({len(dead)} ids): {self.dead_bytes / MIB:.1f} MiB",
                big_record <= DEAD_LETTER_BOUND,
            ),
            Target(
                "longest log line",
                f"{self.log.longest} B ({self.log.longest_event}; ≤ {LOG_LINE_LIMIT})",
                self.log.longest <= LOG_LINE_LIMIT,
            ),
            Target(
                "log lines about rejected records",
                f"{self.log.rejection_lines} for {bad} bad (≤ 1/{LOG_RATIO}); "
                f"{self.log.lines} lines, {self.log.bytes / MIB:.1f} MiB in all",
                self.log.rejection_lines * LOG_RATIO <= bad,
            ),
        ]
        if rss:
            window = self.rss_window()
            if window is None:
                out.append(Target("RSS, 1/6 of the drive → end", "not one process", False))
            else:
                first, last = window
                out.append(
                    Target(
                        "RSS, 1/6 of the drive → end",
                        f"{first / KIB:.1f} → {last / KIB:.1f} MiB "
                        f"({(last / first - 1) * 100:+.1f}%, ≤ {(RSS_GROWTH - 1) * 100:+.0f}%)",
                        last <= first * RSS_GROWTH,
                    )
                )
        return out

    def report(self) -> str:
        """The figures and the table of targets, for a person."""
        p, f = self.plan, self.flood
        peak = max((s[1] for s in self.rss.samples), default=0)
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.produced.items()))
        lines = [
            f"drive {self.drive_s:.0f}s: {self.good_events} good events, {self.bad} bad records "
            f"({self.bad_bytes / MIB:.0f} MiB; broker limit "
            f"{'' if self.broker_refuses else '≥ '}{self.broker_limit} B)",
            f"  bad by kind: {kinds}",
            f"  refused by the broker (no input): {dict(self.refused) or 0}",
            f"flood ({p.flood_clients} clients, {p.flood_rate:g}/s asked): "
            f"{f.get('requests', 0)} requests, {f.get('errors', 0)} connection errors, "
            f"statuses {f.get('statuses', {})}, p50 {f.get('p50_ms', 0):.1f} ms, "
            f"p99 {f.get('p99_ms', 0):.1f} ms, max {f.get('max_ms', 0):.0f} ms",
            f"RSS: {len(self.rss.samples)} samples, peak {peak / KIB:.1f} MiB; daemon CPU "
            f"{sum(self.rss.cpu_s.values()):.0f}s in {self.drive_s:.0f}s of drive and after",
            f"log events: {dict(self.log.events.most_common(8))}",
        ]
        lines += [f"  refusal: {r}" for r in self.refusals[:3]]
        lines += [f"  missing: {m}" for m in self.missing_examples[:5]]
        lines += [
            f"  good record dead-lettered: {d.source}: {d.error}" for d in self.unexpected[:5]
        ]
        lines += [f"  crash: {c.splitlines()[-1][-600:]}" for c in self.facts.crashes[:3]]
        lines.append(self.verdict.report(examples=3))
        width = max(len(t.name) for t in self.targets())
        lines.append("")
        lines.append(f"{'target':<{width}}  {'verdict':<7}  value")
        lines += [
            f"{t.name:<{width}}  {'ok' if t.met else 'MISSED':<7}  {t.value}"
            for t in self.targets()
        ]
        return "\n".join(lines)


class _Flood:
    """tests/flood.py as a child process on the daemon's HTTP address."""

    def __init__(self, plan: SoakPlan, address: str, folder: Path) -> None:
        self.stats_path = folder / "flood.json"
        self.log = (folder / "flood.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "tests.flood", "--address", address,
                "--stats", str(self.stats_path), "--clients", str(plan.flood_clients),
                "--rate", str(plan.flood_rate), "--api-every", str(plan.api_every),
                "--shops", ",".join(SHOP_FILES),
            ],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stats(self) -> dict[str, Any]:
        return read_stats(self.stats_path)

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.stats()


async def _until_dead_lettered(
    reader: SoakReader, bad: BadProducer, timeout_s: float, say: Progress
) -> None:
    """Read until every bad record has its dead letter, or nothing new came for a while."""
    started = last_new = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await reader.poll(500):
            last_new = time.monotonic()
        if set(bad.sent) <= set(reader.dead) or time.monotonic() - last_new > 20:
            break
    missing = len(set(bad.sent) - set(reader.dead))
    say(f"dead letters after {time.monotonic() - started:.0f}s: {missing} bad records missing")


async def run_soak(
    plan: SoakPlan,
    *,
    bootstrap: str,
    redis_url: str,
    folder: Path,
    progress: Progress | None = None,
) -> SoakResult:
    """The whole soak (module docstring); its figures."""
    say = progress or (lambda _: None)
    prefix = f"soak{plan.seed}-{uuid.uuid4().hex[:8]}"
    topics = TopicsConfig(**{f: f"{prefix}.{f}" for f in TopicsConfig.model_fields})
    await create_topics(bootstrap, topics, partitions=plan.partitions)
    limit, refuses = await probe_limit(bootstrap, plan.probe_ceiling)
    say(
        f"broker limit on a record value: {'' if refuses else '≥ '}{limit} B"
        + ("" if refuses else f" (took all it was offered, up to {plan.probe_ceiling} B)")
    )
    config = write_config(
        folder, bootstrap=bootstrap, redis_url=redis_url, topics=topics, shops=SHOP_FILES,
        group_id=f"{prefix}.fenliu",
    )  # fmt: skip
    daemon = DaemonProcess(config)
    await asyncio.to_thread(daemon.start, 60.0)
    say(f"daemon ready (pid {daemon.proc.pid if daemon.proc else '?'}, log {daemon.log_path})")
    facts = RunFacts()
    fleet = Fleet([daemon], facts, say)
    driver = Driver(plan.seed, bootstrap, topics, SHOP_CONFIGS)
    bad = BadProducer(bootstrap, topics, BadRecords(plan.seed, plan.partitions, limit))
    rss = RssSamples()
    flood: _Flood | None = None
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    reader = SoakReader(bootstrap, topics)
    await driver.start()
    try:
        async with reader:
            await driver.wind_down()  # every agent online to begin with
            started = time.monotonic()
            tasks = [
                asyncio.create_task(fleet.watch()),
                asyncio.create_task(driver.drive()),
                asyncio.create_task(bad.run(plan.bad_per_s, plan.big_every_s)),
                asyncio.create_task(rss.run(daemon, plan.rss_every_s, started)),
            ]
            flood = _Flood(plan, daemon.http, folder)
            await _drive(plan, started, reader, tasks, say, lambda: _progress(
                started, driver, bad, reader, rss, flood, daemon, facts))  # fmt: skip
            drive_s = time.monotonic() - started
            driver.stopping = bad.stopping = True
            await asyncio.gather(tasks[1], tasks[2], return_exceptions=True)
            flood_stats = flood.stop()
            await driver.wind_down()
            say(f"drive over after {drive_s:.0f}s; flood stopped; settling ...")
            await _settle(reader, ChaosPlan(settle_s=plan.settle_s), say)
            await _until_dead_lettered(reader, bad, plan.settle_s, say)
            end_ms = wall_ms()
            outputs = await reader.read_to_end(60.0)
    finally:
        driver.stopping = bad.stopping = True
        fleet.closed = True
        if flood is not None:
            flood_stats = flood.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await driver.stop()
        fleet.stopping.add(0)
        code, _ = await asyncio.to_thread(daemon.stop)
    verdict = check(driver.inputs, outputs, SHOP_CONFIGS, end_ms=end_ms)
    for crash in facts.crashes:
        verdict.add("crashed", crash)
    missing_ids = [i for i in bad.sent if i not in reader.dead]
    return SoakResult(
        plan=plan, verdict=verdict, facts=facts, broker_limit=limit, broker_refuses=refuses,
        produced=bad.produced, refused=bad.refused, refusals=bad.refusals, bad_bytes=bad.bytes,
        sent=bad.sent,
        missing=dict(Counter(bad.sent[i].kind for i in missing_ids)),
        missing_examples=[
            f"{i} ({bad.sent[i].kind}, {bad.sent[i].size} B)" for i in missing_ids[:10]
        ],
        unexpected=[d for i, d in reader.dead.items() if i not in bad.sent],
        dead=list(reader.dead.values()), dead_records=reader.dead_records,
        dead_bytes=reader.dead_bytes,
        good_events=len(driver.inputs), rss=rss, drive_s=drive_s,
        log=read_log(daemon.log_path), flood=flood_stats, exit_code=code,
    )  # fmt: skip


async def _drive(
    plan: SoakPlan,
    started: float,
    reader: SoakReader,
    tasks: list[asyncio.Task[None]],
    say: Progress,
    line: Callable[[], str],
) -> None:
    """Read outputs as they come and say how it goes, until `plan.seconds` passed or a task
    of the run failed (the watcher gives up after tests/chaos.py's MAX_CRASHES)."""
    next_line = started + plan.progress_every_s
    while time.monotonic() - started < plan.seconds:
        await reader.poll(1000)
        failed = [t for t in tasks if t.done()]
        if failed:
            with contextlib.suppress(Exception):
                failed[0].result()
            say(f"  a task of the run ended early: {failed[0]!r}; stopping the drive")
            return
        if time.monotonic() >= next_line:
            next_line += plan.progress_every_s
            say(line())


def _progress(
    started: float,
    driver: Driver,
    bad: BadProducer,
    reader: SoakReader,
    rss: RssSamples,
    flood: _Flood | None,
    daemon: DaemonProcess,
    facts: RunFacts,
) -> str:
    """One progress line."""
    elapsed = time.monotonic() - started
    now_rss = rss.samples[-1][1] / KIB if rss.samples else 0.0
    stats = flood.stats() if flood else {}
    behind = len(set(bad.sent) - set(reader.dead))
    log_size = daemon.log_path.stat().st_size if daemon.log_path.exists() else 0
    ready = daemon.get("/readyz")[0]
    return (
        f"  t={elapsed:5.0f}s good {len(driver.inputs)} outputs {len(reader.outputs)} | "
        f"bad {sum(bad.produced.values())} (refused {sum(bad.refused.values())}) dead letters "
        f"{len(reader.dead)} ({behind} behind) | rss {now_rss:.1f} MiB | scrapes "
        f"{stats.get('requests', 0)} (errors {stats.get('errors', 0)}) | log "
        f"{log_size / MIB:.1f} MiB | crashes {len(facts.crashes)} | readyz {ready}"
    )
