"""Bad input and odd input never stop routing (contract §6, issue 23): two live instances.

- Poison on every input topic — values of 200 KB of control characters, a 900 KB pasted
  transcript, one just under what a producer with the usual 1 MiB request limit can send
  (the record limit of a Kafka broker as shipped) and one of 2 MiB (Tansu 0.6 sets no limit
  of its own), a 100 KB key, a payload that is not UTF-8 — mixed with the normal traffic of
  four shops, while one instance is SIGKILLed and started again: both instances stay
  (or come back) ready, every dead letter fits its bound (raw at most 16 KiB, the record
  under 64 KiB) and names its record, no shop is set aside, and the contract §6 audit of the
  outputs (tests/chaos_check.py) is clean: every inquiry decided.
- A poisoned outbox in Redis — records too large for any producer, as an older version
  wrote for a huge bad record — does not stop a restore: both instances come up ready, the
  records are refused once, logged and dropped from the outboxes, the other shop is routed,
  and an instance killed and started again inherits nothing of them.
"""

from __future__ import annotations

import signal
import time
import tomllib
from pathlib import Path

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from daemon.config import TopicsConfig
from daemon.core.config import ShopConfig
from daemon.dev.stack import Broker
from daemon.service.kafka import home_partition
from daemon.service.store import (
    OutboxRecord,
    Owned,
    PartitionCheckpoint,
    ShopCheckpoint,
    Store,
)
from daemon.tools.topics_admin import create_topics
from tests.chaos import read_outputs
from tests.chaos_check import check
from tests.conftest import unique_topics
from tests.e2e import TWO_AGENTS_SHOP, DaemonProcess, Wire, fleet_of_two, until
from topics.codec import MAX_RECORD_BYTES
from topics.excerpt import MAX_KEY_BYTES, MAX_RAW_BYTES

pytestmark = pytest.mark.e2e

SHOP = TWO_AGENTS_SHOP
SHOPS = ("s0", "s1", "s2", "s3")
CLIENT_LIMIT = 1_048_576  # aiokafka's (and the Java client's) default max_request_size
JUST_UNDER = CLIENT_LIMIT - 256  # a value a default producer can still send with its key


def _config(shop: str) -> ShopConfig:
    return ShopConfig.model_validate(tomllib.loads(SHOP.format(id=shop)))


def _poison(shop: str) -> list[tuple[str, bytes, bytes]]:
    """(what, key, value) of each poison record, sent on every input topic."""
    transcript = '{"type":"message","text":"' + "客服您好，我想问一下发货时间。\\n" * 20_000
    return [
        ("200 KB of control characters", shop.encode(), bytes(range(32)) * 6_250),
        ("900 KB pasted transcript", shop.encode(), transcript.encode()[:900_000]),
        ("just under the client limit", shop.encode(), b"x" * JUST_UNDER),
        ("2 MiB", shop.encode(), b"y" * (2 << 20)),
        ("100 KB key", b"k" * 100_000, b'{"type":"inquiry","id":"k","shop_id":"k","ts":1}'),
        ("not UTF-8", shop.encode(), b"\xff\xfe\x00\x80" * 12_500),
    ]


def _sample(metrics: str, name: str) -> float:
    """The value of a metric without labels in a /metrics answer."""
    return float(next(x for x in metrics.splitlines() if x.startswith(f"{name} ")).split()[1])


def _ready(*daemons: DaemonProcess) -> bool:
    return all(d.get("/readyz")[0] == 200 for d in daemons)


async def _dead_letters(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every record of the dead-letter topic: key and value, as bytes."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # fetch the metadata of every topic
        numbers = sorted(consumer.partitions_for_topic(topic) or ())
        parts = [TopicPartition(topic, p) for p in numbers]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        found: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + 30
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            assert time.monotonic() < deadline, "dead-letter topic not read to its end"
            batch = await consumer.getmany(timeout_ms=300)
            found += [(r.key, r.value) for records in batch.values() for r in records]
        return found
    finally:
        await consumer.stop()


def _check_bounds(letters: list[tuple[bytes | None, bytes]]) -> dict[str, dict[str, object]]:
    """Every dead letter within its bounds; the dead letters by id."""
    by_id: dict[str, dict[str, object]] = {}
    for key, value in letters:
        assert len(value) <= MAX_RECORD_BYTES, f"a dead letter of {len(value)} bytes"
        letter = orjson.loads(value)
        assert len(orjson.dumps(letter["raw"])) - 2 <= MAX_RAW_BYTES
        assert key is None or len(key) <= MAX_KEY_BYTES
        by_id[letter["id"]] = letter
    return by_id


@pytest.mark.timeout(300)
async def test_poison_on_every_input_topic_never_stops_a_fleet_of_two(
    broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=4)
    x, y = daemons = fleet_of_two(
        tmp_path, bootstrap=broker.bootstrap, redis_url=redis_url, topics=topics,
        shops={s: SHOP.format(id=s) for s in SHOPS}, kafka_extra='session_timeout = "2s"',
    )  # fmt: skip
    x.start()
    y.start(ready="/healthz")
    wires = [Wire(broker.bootstrap, topics, s) for s in SHOPS]
    usual = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)  # 1 MiB requests
    big = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, max_request_size=8 << 20)
    expected: dict[str, str] = {}  # dead-letter id -> what the record was
    try:
        await until(lambda: _ready(x, y), 60, "both instances ready")
        for w in wires:
            await w.__aenter__()
            await w.status("a1", "online")
            await w.status("a2", "online")
        await usual.start()
        await big.start()
        inputs = (topics.inquiries, topics.messages, topics.agent_status)
        for round_, topic in enumerate(inputs):
            for n, w in enumerate(wires):
                for k, (what, key, value) in enumerate(_poison(w.shop)[n % 2 :: 2]):  # 3 of 6
                    producer = big if len(value) > JUST_UNDER else usual
                    sent = await (await producer.send(topic, value, key=key))
                    expected[f"rej:{topic}:{sent.partition}:{sent.offset}"] = what
                    await w.inquiry(f"{w.shop}-b{round_}-{k}")
            if round_ == 1:
                x.kill()  # a crash in the middle of the poison
                await wires[0].inquiry("s0-while-x-is-down")
                x.start(ready="/healthz")
        await until(lambda: _ready(x, y), 60, "both instances ready after the kill")
        assert len(set(expected.values())) == 6, "every kind of poison on the wire"
        for w in wires:
            await w.inquiry(f"{w.shop}-last")
            await w.wait_for(lambda e, shop=w.shop: e.get("buyer_id") == f"{shop}-last", 60)
        assert all(d.proc is not None and d.proc.poll() is None for d in daemons)
        assert _ready(x, y)
        cut = 0.0
        for d in daemons:
            metrics = d.fresh_metrics()
            assert "fenliu_shop_quarantined{" not in metrics, d.log_tail()
            cut += _sample(metrics, "fenliu_rejects_cut_total")
        assert cut > 0, "cut dead letters are counted"
    finally:
        await usual.stop()
        await big.stop()
        for w in wires:
            await w.__aexit__()
        codes = [d.stop()[0] for d in daemons]
    assert codes == [0, 0], x.log_tail() + y.log_tail()

    by_id = _check_bounds(await _dead_letters(broker.bootstrap, topics.dead_letter))
    missing = {i: what for i, what in expected.items() if i not in by_id}
    assert not missing, f"poison without its dead letter: {missing}"
    cut = [by_id[i] for i, what in expected.items() if what not in ("100 KB key",)]
    assert all(letter["raw_truncated"] is True for letter in cut)
    keyed = [by_id[i] for i, what in expected.items() if what == "100 KB key"]
    assert all(letter["key_truncated"] is True for letter in keyed)
    outputs = await read_outputs(broker.bootstrap, topics)
    inputs_sent = [e for w in wires for e in w.sent]
    verdict = check(inputs_sent, outputs, {s: _config(s) for s in SHOPS})
    assert verdict.clean, verdict.report(examples=5)
    assert verdict.figures["inquiries"] == sum(e["type"] == "inquiry" for e in inputs_sent)
    assert verdict.figures["inquiries"] == len(SHOPS) * 10 + 1
    for d in daemons:
        log = d.log_path.read_text()
        assert '"output_refused"' not in log and '"output_oversized"' not in log


async def _poison_outbox(redis_url: str, topics: TopicsConfig) -> list[str]:
    """Write, the way a checkpoint does, outbox records no producer can send: an assignment
    of shop "bad" and two dead letters of 2 MB (as an older version wrote for a huge bad
    record), one in the shop's outbox, one in a partition's; their ids."""
    prefix = topics.inquiries.split(".")[0]
    client = aioredis.Redis.from_url(redis_url)
    store = Store(client, prefix, dedup_capacity=1000)
    huge = "x" * 2_000_000
    assignment = {
        "type": "assignment", "id": "asg:old-1", "shop_id": "bad", "ts": 1, "inquiry_id": "old-1",
        "buyer_id": "b", "agent_id": "a1", "group": "g", "reason": "routed", "mode": None,
        "waited_ms": 0, "note": huge,
    }  # fmt: skip

    def letter(id_: str, shop: str) -> bytes:
        return orjson.dumps({
            "type": "rejected", "id": id_, "shop_id": shop, "ts": 1, "error": "value is not JSON",
            "source_topic": topics.inquiries, "partition": 0, "offset": 1, "raw": huge,
        })  # fmt: skip

    try:
        epoch = (await store.claim_shops(["bad"]))["bad"]
        assert not isinstance(epoch, Exception)
        shop_outbox = [
            OutboxRecord(topics.assignments, b"bad", orjson.dumps(assignment)),
            OutboxRecord(topics.dead_letter, b"bad", letter("rej:old:0:1", "bad")),
        ]
        await store.save_shops({"bad": (Owned(epoch.epoch, 1), ShopCheckpoint(outbox=shop_outbox))})
        part = home_partition(b"nobody", 2)
        claimed = (await store.claim_partitions([part]))[part]
        assert not isinstance(claimed, Exception)
        stray = [OutboxRecord(topics.dead_letter, b"nobody", letter("rej:old:0:2", "nobody"))]
        checkpoint = PartitionCheckpoint(outbox=stray)
        await store.save_partitions({part: (Owned(claimed.epoch, 1), checkpoint)})
    finally:
        await client.aclose()
    return ["asg:old-1", "rej:old:0:1", "rej:old:0:2"]


def _refused_ids(daemons: list[DaemonProcess]) -> list[str]:
    """The ids of the outputs the daemons logged as refused for good."""
    lines = [line for d in daemons for line in d.log_path.read_text().splitlines()]
    return [orjson.loads(line)["id"] for line in lines if '"output_refused"' in line]


@pytest.mark.timeout(180)
async def test_a_poisoned_outbox_in_redis_does_not_stop_a_restore(
    broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=2)
    poisoned = await _poison_outbox(redis_url, topics)
    x, y = daemons = fleet_of_two(
        tmp_path, bootstrap=broker.bootstrap, redis_url=redis_url, topics=topics,
        shops={s: SHOP.format(id=s) for s in ("bad", "good")}, kafka_extra='session_timeout = "2s"',
    )  # fmt: skip
    x.start()
    y.start(ready="/healthz")
    try:
        await until(lambda: _ready(x, y), 60, "both instances ready")
        assert sorted(set(_refused_ids(daemons))) == sorted(poisoned)
        prefix = topics.inquiries.split(".")[0]
        with redis.Redis.from_url(redis_url) as client:
            left = [k for k in client.keys(f"{prefix}:*outbox") if client.llen(k)]
        assert left == [], "the refused records are gone from the outboxes"
        async with Wire(broker.bootstrap, topics, "good") as good:
            await good.status("a1", "online")
            await good.inquiry("g1")
            assert (await good.assignment("g1", timeout=30))["agent_id"] == "a1"

            refused_before = len(_refused_ids(daemons))
            x.kill()
            x.start(ready="/healthz")
            await until(lambda: _ready(x, y), 60, "both ready after the kill")
            await good.inquiry("g2")
            await good.assignment("g2", timeout=30)
            assert len(_refused_ids(daemons)) == refused_before, "nothing inherited"
        for d in daemons:
            d.signal(signal.SIGHUP)  # a reload releases what was set aside
        async with Wire(broker.bootstrap, topics, "bad") as bad:
            await bad.status("a1", "online")
            await bad.inquiry("c1")
            assert (await bad.assignment("c1", timeout=30))["agent_id"] == "a1"
    finally:
        codes = [d.stop()[0] for d in daemons]
    assert codes == [0, 0], x.log_tail() + y.log_tail()
