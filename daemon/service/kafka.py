"""Kafka plumbing of the service: co-partitioned assignment, batch ordering, output routing.

Every event of a shop is keyed by the shop id, so it lands on the same partition number of
each input topic: the shop's home, `home_partition` (`murmur2(key) mod partitions`, the
default partitioner's choice). `CoPartitionAssignor` gives partition p of *every* subscribed
topic to the same member, so exactly one instance owns a shop (contract §1 and 7).
`ordered_batch` turns a fetched batch into per-partition sequences in which the three topics
are merged by event time (`ts`) while each topic keeps its own offset order.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord, TopicPartition

from daemon.config import TopicsConfig
from topics.codec import TopicKind
from topics.events import (
    Assignment,
    InputEvent,
    OutputEvent,
    QueueUpdate,
    Rejected,
    SessionClosed,
)


def home_partition(key: bytes, partitions: int) -> int:
    """Where the Java client's default partitioner (and aiokafka's) puts a record key."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class CoPartitionAssignor(AbstractPartitionAssignor):  # type: ignore[misc]  # aiokafka is untyped
    """Partition p of every subscribed topic goes to the same member (round robin over p)."""

    name = "fenliu-copartition"
    version = 0

    @classmethod
    def assign(
        cls,
        cluster: ClusterMetadata,
        members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        """Assign partition numbers round robin over members sorted by id."""
        ordered = sorted(members)
        topics = sorted({t for meta in members.values() for t in meta.subscription})
        plan: dict[str, dict[str, list[int]]] = {m: defaultdict(list) for m in ordered}
        for topic in topics:
            subscribers = [m for m in ordered if topic in members[m].subscription]
            for p in sorted(cluster.partitions_for_topic(topic) or ()):
                plan[subscribers[p % len(subscribers)]][topic].append(p)
        return {
            m: ConsumerProtocolMemberAssignment(cls.version, sorted(plan[m].items()), b"")
            for m in ordered
        }

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        """What a member sends when joining: its subscription."""
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        """Nothing to remember."""


@dataclass(frozen=True, slots=True)
class TopicMap:
    """Configured topic names and which logical input topic each one is."""

    topics: TopicsConfig

    @property
    def inputs(self) -> dict[str, TopicKind]:
        """Input topic name -> logical kind, in tie-break order: at the same `ts`, agent
        status changes apply before inquiries, inquiries before messages."""
        t = self.topics
        return {
            t.agent_status: TopicKind.AGENT_STATUS,
            t.inquiries: TopicKind.INQUIRIES,
            t.messages: TopicKind.MESSAGES,
        }

    def output_topic(self, event: OutputEvent) -> str:
        """Where an output event is produced."""
        if isinstance(event, Assignment | SessionClosed):
            return self.topics.assignments
        if isinstance(event, QueueUpdate):
            return self.topics.queue_updates
        assert isinstance(event, Rejected)
        return self.topics.dead_letter


@dataclass(frozen=True, slots=True)
class Decoded:
    """One consumed record, decoded: exactly one of `event` and `error` is set."""

    record: ConsumerRecord[Any, Any]
    event: InputEvent | None
    error: str | None

    @property
    def ts(self) -> int:
        """Event time: the event's `ts`, or the record's timestamp when it was rejected."""
        return self.event.ts if self.event is not None else int(self.record.timestamp)


def ordered_batch(
    batch: Mapping[TopicPartition, Sequence[ConsumerRecord[Any, Any]]],
    topic_order: Sequence[str],
    decode: Callable[[ConsumerRecord[Any, Any]], Decoded],
) -> Iterator[tuple[int, Iterator[Decoded]]]:
    """Per partition number, its decoded records of all topics merged by event time.

    Each topic keeps its offset order; ties in time follow `topic_order`.
    """
    rank = {name: i for i, name in enumerate(topic_order)}
    by_partition: dict[int, list[list[Decoded]]] = defaultdict(list)
    for tp in sorted(batch, key=lambda tp: (tp.partition, rank.get(tp.topic, 99))):
        by_partition[tp.partition].append([decode(r) for r in batch[tp]])
    for partition, streams in sorted(by_partition.items()):
        yield partition, heapq.merge(*streams, key=lambda d: (d.ts, rank.get(d.record.topic, 99)))
