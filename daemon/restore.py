"""Bringing owned shops back from Redis: on every partition assignment and after an outage.

`restore_partitions` forgets nothing by itself (the service drops ownership first); it claims
the given partitions and the shops whose home they are (daemon.store: claiming fences the
previous owner), loads the shops — quarantining any whose stored state fails its check —,
produces their outboxes again (same ids, same contents), waits for the acknowledgements and
seeks each input partition to its watermark — or, if Redis has none, to the group's
committed offset, or the beginning.
Any failure raises (StoreError from Redis, KafkaError from Kafka) and the service retries.

`Rebalance` hands aiokafka's partition moves to the service, which takes its lock for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import TopicPartition

from daemon.checkpoint import Checkpoint
from daemon.metrics import Metrics

RESEND_TIMEOUT_S = 30.0  # re-sending outboxes after a restore
RESEND_CHECK_S = 1.0  # while waiting for those acknowledgements, look at `stopping` this often
RELEASE_HINT = (
    "its records are held, not lost: fix the cause (a daemon bug: upgrade; bad stored "
    "state: repair or delete its Redis keys), then restart or reload (SIGHUP) to serve it again"
)

PartitionsMoved = Callable[[list[TopicPartition]], Awaitable[None]]


async def restore_partitions(
    checkpoint: Checkpoint,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    assigned: Iterable[TopicPartition],
    *,
    stopping: Callable[[], bool],
    metrics: Metrics,
    log: Any,
) -> set[TopicPartition]:
    """Claim the partitions of `assigned` and their shops in Redis, load the shops, send
    their outboxes again, seek every partition to its watermark; the partitions now owned
    (StoreError/KafkaError when Redis or Kafka fails)."""
    started = time.perf_counter()
    tps = sorted(assigned)
    count = max((len(consumer.partitions_for_topic(tp.topic) or ()) for tp in tps), default=0)
    restored = await checkpoint.restore({tp.partition for tp in tps}, count or 1)
    for shop_id, problem in restored.quarantined.items():
        metrics.quarantines.inc()
        log.error("shop_quarantined", shop_id=shop_id, cause=problem, release=RELEASE_HINT)
    futures = [await producer.send(r.topic, r.value, r.key) for r in restored.resend]
    waited = 0.0
    while futures and not all(f.done() for f in futures):
        if stopping() or waited >= RESEND_TIMEOUT_S:
            for future in futures:
                future.add_done_callback(retrieve)
            raise KafkaTimeoutError(f"{len(futures)} outbox records not acknowledged")
        await asyncio.wait(futures, timeout=RESEND_CHECK_S)
        waited += RESEND_CHECK_S
    for future in futures:
        future.result()  # a refused record raises (KafkaError): the restore is retried
    await checkpoint.acknowledged()
    for tp in tps:
        mark = restored.marks.get((tp.topic, tp.partition))
        if mark is not None:
            consumer.seek(tp, mark)
        elif (committed := await consumer.committed(tp)) is not None:
            consumer.seek(tp, committed)
        else:
            await consumer.seek_to_beginning(tp)
    metrics.restores.inc()
    seconds = time.perf_counter() - started
    metrics.restore_seconds.observe(seconds)
    log.info(
        "restored",
        partitions=sorted({tp.partition for tp in tps}),
        shops=restored.shops,
        resent=len(restored.resend),
        quarantined=len(restored.quarantined),
        seconds=round(seconds, 3),
    )
    return set(tps)


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a dropped delivery future's outcome as seen (its record is re-sent anyway)."""
    if not future.cancelled():
        future.exception()


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Hands partition moves to the service's callbacks (which take its lock)."""

    def __init__(self, revoked: PartitionsMoved, assigned: PartitionsMoved) -> None:
        self._revoked, self._assigned = revoked, assigned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._assigned(assigned)
