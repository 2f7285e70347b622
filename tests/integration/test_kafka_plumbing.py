"""The service's Kafka plumbing: co-partitioned assignment, per-partition `ts` order, and the
refusal to start on input topics with different partition counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from aiokafka.structs import ConsumerRecord, TopicPartition

from daemon.config import TopicsConfig
from daemon.dev.stack import Broker, RedisServer, write_daemon_config
from daemon.service import holdings as holdings_module
from daemon.service.holdings import Holdings
from daemon.service.kafka import (
    CoPartitionAssignor,
    Decoded,
    TopicMap,
    home_partition,
    ordered_batch,
)
from tests.conftest import run_sync, unique_topics
from topics.codec import DecodeError, decode

REPO = Path(__file__).resolve().parents[2]
TOPICS = TopicsConfig()
INPUTS = [TOPICS.inquiries, TOPICS.messages, TOPICS.agent_status]


class _Cluster:
    def __init__(self, partitions: dict[str, int]) -> None:
        self._partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        n = self._partitions.get(topic)
        return set(range(n)) if n is not None else None


def _assign(members: list[str], partitions: int) -> dict[str, dict[str, list[int]]]:
    cluster = _Cluster(dict.fromkeys(INPUTS, partitions))
    meta = {m: ConsumerProtocolMemberMetadata(0, INPUTS, b"") for m in members}
    plan = CoPartitionAssignor.assign(cluster, meta)  # type: ignore[arg-type]
    return {m: dict(a.assignment) for m, a in plan.items()}


def test_copartition_assignor_gives_partition_p_of_every_topic_to_one_member() -> None:
    plan = _assign(["m-b", "m-a", "m-c"], partitions=8)
    owner: dict[int, str] = {}
    for member, topics in plan.items():
        assert set(topics) == set(INPUTS)
        for topic, parts in topics.items():
            for p in parts:
                assert owner.setdefault(p, member) == member, (topic, p)
    assert sorted(owner) == list(range(8))
    assert sorted(len(plan[m][TOPICS.inquiries]) for m in plan) == [2, 3, 3]


def test_copartition_assignor_with_one_member_takes_everything() -> None:
    plan = _assign(["only"], partitions=4)
    assert plan["only"] == {topic: [0, 1, 2, 3] for topic in INPUTS}


# The Java client's Utils.murmur2 (UtilsTest.testMurmur2 in apache/kafka): key -> signed hash.
JAVA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]
# aiokafka's tests/test_partitioner.py (from the Java client's partitioner): key -> partition
# of 1000.
JAVA_PARTITION_OF_1000 = [
    (b"", 681),
    (b"a", 524),
    (b"ab", 434),
    (b"abc", 107),
    (b"123456789", 566),
    (b"\x00 ", 742),
]


@pytest.mark.parametrize(("key", "java_hash"), JAVA_MURMUR2)
def test_home_partition_is_the_java_clients_murmur2_bit_for_bit(key: bytes, java_hash: int) -> None:
    """contract §1: a shop's home is the Java default partitioner's choice, toPositive(murmur2)
    mod partitions, for every partition count."""
    for partitions in (1, 2, 3, 4, 7, 8, 31, 1000, 2**31 - 1):
        assert home_partition(key, partitions) == (java_hash & 0x7FFFFFFF) % partitions


@pytest.mark.parametrize(("key", "partition"), JAVA_PARTITION_OF_1000)
def test_home_partition_matches_the_java_partitioner_vectors(key: bytes, partition: int) -> None:
    assert home_partition(key, 1000) == partition


def test_home_partition_is_computed_once_per_shop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-record misrouting check costs a dict lookup: Holdings.home hashes a shop id
    once (again only after a restore with another partition count). The intake asks only for
    configured shops, so the cache holds at most one entry per shop file."""
    calls: list[bytes] = []

    def counting(key: bytes, partitions: int) -> int:
        calls.append(key)
        return home_partition(key, partitions)

    monkeypatch.setattr(holdings_module, "home_partition", counting)
    cp = Holdings()
    cp.partitions = 8
    homes = {shop: cp.home(shop) for _ in range(1000) for shop in ("foobar", "abc")}
    assert homes == {"foobar": (-790332482 & 0x7FFFFFFF) % 8, "abc": 479470107 % 8}
    assert calls == [b"foobar", b"abc"]


def _record(topic: str, partition: int, offset: int, body: dict[str, Any]) -> Any:
    value = orjson.dumps({"shop_id": "s", "id": f"{topic}-{offset}", **body})
    return ConsumerRecord(topic, partition, offset, 0, 0, b"s", value, None, 0, len(value), [])


def _decode(record: Any) -> Decoded:
    try:
        return Decoded(
            record, decode(record.value, record.key, TopicMap(TOPICS).inputs[record.topic]), None
        )
    except DecodeError as exc:
        return Decoded(record, None, str(exc))


def test_batch_is_merged_by_ts_per_partition_keeping_each_topics_offset_order() -> None:
    inq = [
        _record(TOPICS.inquiries, 0, 0, {"type": "inquiry", "buyer_id": "b1", "ts": 30}),
        _record(TOPICS.inquiries, 0, 1, {"type": "inquiry", "buyer_id": "b2", "ts": 10}),
    ]
    msg = [
        _record(
            TOPICS.messages, 0, 0, {"type": "message", "buyer_id": "b1", "from": "buyer", "ts": 20}
        )
    ]
    online = {"type": "agent_status", "agent_id": "a", "status": "online", "ts": 30}
    status = [_record(TOPICS.agent_status, 0, 0, online)]
    other = [_record(TOPICS.inquiries, 1, 0, {"type": "inquiry", "buyer_id": "b9", "ts": 1})]
    batch = {
        TopicPartition(TOPICS.inquiries, 0): inq,
        TopicPartition(TOPICS.messages, 0): msg,
        TopicPartition(TOPICS.agent_status, 0): status,
        TopicPartition(TOPICS.inquiries, 1): other,
    }
    order = list(TopicMap(TOPICS).inputs)
    result = {
        p: [(d.record.topic, d.record.offset) for d in items]
        for p, items in ordered_batch(batch, order, _decode)
    }
    # each topic keeps its offset order (the inquiry at ts 30 stays before the one at ts 10);
    # across topics the earliest head goes first; at equal ts, agent status before inquiries
    assert result[0] == [
        (TOPICS.messages, 0),
        (TOPICS.agent_status, 0),
        (TOPICS.inquiries, 0),
        (TOPICS.inquiries, 1),
    ]
    assert result[1] == [(TOPICS.inquiries, 0)]


def test_daemon_refuses_to_start_when_input_partition_counts_differ(
    broker: Broker, redis_server: RedisServer, tmp_path: Path
) -> None:
    from daemon.tools.topics_admin import create_topics

    topics = unique_topics()
    run_sync(create_topics(broker.bootstrap, topics, partitions=2))
    odd = TopicsConfig(**{**topics.model_dump(), "messages": f"{topics.messages}-3"})
    run_sync(create_topics(broker.bootstrap, odd, partitions=3))
    shop = (REPO / "config" / "shops" / "small.toml").read_text()
    config = write_daemon_config(
        tmp_path, bootstrap=broker.bootstrap, redis_url=redis_server.url,
        shops={"small": shop}, topics=odd,
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2
    assert "same partition count" in done.stderr and "startup_refused" in done.stderr
