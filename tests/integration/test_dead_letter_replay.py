"""`fenliu dead-letter replay` against the real broker, no daemon: what it reads (from the
beginning or `--since`), that `--dry-run` sends nothing, where it sends, and that it exits 1
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
from topics.events import BuyerInquired, RejectKind

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
