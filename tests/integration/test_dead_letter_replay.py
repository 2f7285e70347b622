"""`fenliu dead-letter replay` against the real broker, no daemon: what it reads (from the
beginning or `--since`), that `--dry-run` sends nothing, where it sends, that a dead letter
holding only an excerpt is replayed from its record in the source topic, and that it exits 1
without Kafka and 2 for a bad configuration (daemon.tools.dead_letter)."""

from __future__ import annotations

import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from daemon.config import TopicsConfig
from daemon.dev.stack import Broker, free_port
from daemon.service.kafka import home_partition
from daemon.tools.topics_admin import create_topics
from tests.conftest import unique_topics
from tests.e2e import kafka_only_config, run_fenliu
from topics.codec import encode, rejected_for
from topics.events import BuyerInquired, InquiryContext, RejectKind

REPO = Path(__file__).resolve().parents[2]


def _letter(topics: TopicsConfig, shop: str, n: int, kind: RejectKind, part: int) -> bytes:
    value = encode(BuyerInquired(f"inq-{n}", shop, 1000 + n, f"b-{n}"))
    event = rejected_for(
        "why", source_topic=topics.inquiries, partition=part, offset=n, value=value,
        key=shop.encode(), now_ms=5, kind=kind,
    )  # fmt: skip
    return encode(event)


async def _inquiries(bootstrap: str, topics: TopicsConfig) -> list[tuple[int, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = [TopicPartition(topics.inquiries, p) for p in range(4)]
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, 0)
        batch = await consumer.getmany(timeout_ms=1500)
        return [(r.partition, r.key) for records in batch.values() for r in records]
    finally:
        await consumer.stop()


async def test_replay_dry_run_sends_nothing_then_replay_sends_home_and_since_skips_older(
    broker: Broker, tmp_path: Path
) -> None:
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=4)
    config = str(kafka_only_config(tmp_path, broker.bootstrap, topics))
    home = home_partition(b"small", 4)
    started = int(time.time() * 1000) - 1000
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for n, (shop, kind) in enumerate(
            [("small", "misrouted"), ("gone", "unknown_shop"), ("small", "invalid")]
        ):
            letter = _letter(topics, shop, n, kind, (home + 1) % 4)
            await (await producer.send(topics.dead_letter, letter, key=shop.encode()))
    finally:
        await producer.stop()

    dry = run_fenliu(
        "dead-letter",
        "replay",
        "--config",
        config,
        "--reason",
        "misrouted",
        "unknown_shop",
        "--dry-run",
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"read 3 from {topics.dead_letter}",
        "selected 2",
        f"  rej:{topics.inquiries}:{(home + 1) % 4}:0 -> {topics.inquiries} partition {home}",
        "would re-send 1",
        "still invalid 1",
        f"  rej:{topics.inquiries}:{(home + 1) % 4}:1: shop 'gone' is still not configured",
        "skipped 1",
        "  1 reason invalid not selected",
    ]
    assert await _inquiries(broker.bootstrap, topics) == []

    done = run_fenliu("dead-letter", "replay", "--config", config, "--reason", "misrouted")
    assert done.returncode == 0, done.stderr
    assert "re-sent 1" in done.stdout.splitlines()
    assert await _inquiries(broker.bootstrap, topics) == [(home, b"small")]

    since = run_fenliu(
        "dead-letter", "replay", "--config", config, "--since", str(started), "--dry-run"
    )
    assert since.stdout.splitlines()[0] == f"read 3 from {topics.dead_letter}"
    later = run_fenliu(
        "dead-letter",
        "replay",
        "--config",
        config,
        "--since",
        str(int(time.time() * 1000) + 60_000),
    )
    assert (later.returncode, later.stdout.splitlines()[0]) == (
        0,
        f"read 0 from {topics.dead_letter}",
    )


def test_replay_without_kafka_exits_1_and_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    config = kafka_only_config(tmp_path, bootstrap, TopicsConfig())
    unreachable = run_fenliu("dead-letter", "replay", "--config", str(config))
    assert unreachable.returncode == 1
    assert (
        unreachable.stderr == f"fenliu dead-letter replay: cannot connect to Kafka at {bootstrap}\n"
    )
    config.write_text("[kafka]\n")
    bad = run_fenliu("dead-letter", "replay", "--config", str(config))
    assert bad.returncode == 2 and "redis" in bad.stderr


async def test_a_cut_dead_letter_is_replayed_from_its_record_in_the_source_topic(
    broker: Broker, tmp_path: Path
) -> None:
    """A dead letter that holds only 16 KiB of a 26 KB record: replay fetches the record from
    its source topic, partition and offset and sends it whole; one whose offset holds no
    record any more is reported, not sent."""
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=4)
    config = str(kafka_only_config(tmp_path, broker.bootstrap, topics))
    home = home_partition(b"small", 4)
    wrong = (home + 1) % 4
    crowd = tuple(f"{i:03}" + "t" * 120 for i in range(200))
    value = encode(BuyerInquired("inq-big", "small", 1000, "b-big", InquiryContext(crowd=crowd)))
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        sent = await (await producer.send(topics.inquiries, value, key=b"small", partition=wrong))
        for offset in (sent.offset, sent.offset + 50):  # the record, and a place with none
            letter = rejected_for(
                "why", source_topic=topics.inquiries, partition=wrong, offset=offset,
                value=value, key=b"small", now_ms=5, kind="misrouted",
            )  # fmt: skip
            assert letter.raw_truncated
            await (await producer.send(topics.dead_letter, encode(letter), key=b"small"))
    finally:
        await producer.stop()

    dry = run_fenliu("dead-letter", "replay", "--config", config, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    source = f"rej:{topics.inquiries}:{wrong}"
    assert f"  {source}:{sent.offset} -> {topics.inquiries} partition {home}" in lines
    assert "would re-send 1" in lines
    assert (
        f"  {source}:{sent.offset + 50}: the dead letter holds only an excerpt, and the record "
        f"is no longer in {topics.inquiries} partition {wrong} at offset {sent.offset + 50}"
    ) in lines

    done = run_fenliu("dead-letter", "replay", "--config", config)
    assert done.returncode == 0, done.stderr
    assert "re-sent 1" in done.stdout.splitlines()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topics.inquiries, home)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        batch = await consumer.getmany(tp, timeout_ms=3000)
    finally:
        await consumer.stop()
    assert [(r.key, r.value) for r in batch.get(tp, [])] == [(b"small", value)]
