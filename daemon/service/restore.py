"""Bringing owned shops back from Redis: on every partition assignment and after an outage.

`restore_partitions` forgets every shop, claims the given partitions and the shops whose
home they are (daemon.service.store: claiming fences the previous owner), loads the shops —
quarantining any whose stored state fails its check, setting aside any whose Redis node
does not answer —, and `resume`s: produces their outboxes again (same ids, same contents),
waits for the acknowledgements (an outbox record Kafka refuses for good is settled, not
retried: daemon.service.delivery) and seeks each input partition to its watermark — or, if
Redis has none, to the group's committed offset, or the beginning. The service `resume`s
the same way after readmitting shops that were set aside (daemon.service.checkpoint).
Any failure raises (StoreError from Redis, KafkaError from Kafka) and the service retries.

`Ownership` keeps the partitions this instance owns — assigned, claimed and restored — and
makes the moves that change them: `restore` (an assignment, an outage), `readmit`, `revoke`,
`lose` and `wait`. A fleet: restoring a partition claims it in Redis, so an instance that
missed a rebalance finds its next checkpoint fenced, publishes nothing of it and lets the
partition go (`lose`; the service then asks for a rebalance). One shop's trouble stays that
shop's: an engine failure quarantines it, a Redis Cluster node that does not answer makes it
wait, and either way its records are held and read again when it is readmitted
(daemon.service.checkpoint, "Set aside"). Partitions whose own bookkeeping did not answer
`wait` as a whole and are claimed again by `readmit`.

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

from daemon.service.checkpoint import Checkpoint
from daemon.service.checkpoint_types import Restored
from daemon.service.delivery import Refusals, refused_for_good, retrieve, send_all
from daemon.service.logs import Repeats
from daemon.service.metrics import Metrics
from daemon.service.store import StoreError

RESEND_TIMEOUT_S = 30.0  # re-sending outboxes after a restore
RESEND_CHECK_S = 1.0  # while waiting for those acknowledgements, look at `stopping` this often
UNANSWERED_LOG_S = 60.0  # a readmission Redis does not answer: logged at most this often
RELEASE_HINT = (
    "its records are held, not lost: fix the cause (a daemon bug: upgrade; bad stored "
    "state: repair or delete its Redis keys), then restart or reload (SIGHUP) to serve it again"
)

PartitionsMoved = Callable[[list[TopicPartition]], Awaitable[None]]
Stopping = Callable[[], bool]


async def restore_partitions(
    checkpoint: Checkpoint,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    assigned: Iterable[TopicPartition],
    *,
    stopping: Callable[[], bool],
    refusals: Refusals,
    metrics: Metrics,
    log: Any,
) -> set[TopicPartition]:
    """Forget every shop, claim the partitions of `assigned` and their shops in Redis, load
    the shops, send their outboxes again, seek every partition to its watermark; the
    partitions now owned (StoreError/KafkaError when Redis or Kafka fails)."""
    started = time.perf_counter()
    tps = sorted(assigned)
    count = max((len(consumer.partitions_for_topic(tp.topic) or ()) for tp in tps), default=0)
    restored = await checkpoint.restore({tp.partition for tp in tps}, count or 1)
    owned = {tp for tp in tps if tp.partition in restored.owned}
    await resume(
        checkpoint, consumer, producer, restored, owned, stopping=stopping, refusals=refusals,
        log=log,
    )  # fmt: skip
    metrics.restores.inc()
    seconds = time.perf_counter() - started
    metrics.restore_seconds.observe(seconds)
    log.info(
        "restored",
        partitions=sorted({tp.partition for tp in tps}),
        shops=restored.shops,
        resent=len(restored.resend),
        set_aside=len(restored.set_aside),
        waiting_partitions=sorted(restored.waiting),
        seconds=round(seconds, 3),
    )
    return owned


async def resume(
    checkpoint: Checkpoint,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    restored: Restored,
    fresh: Iterable[TopicPartition],
    *,
    stopping: Stopping,
    refusals: Refusals,
    log: Any,
) -> None:
    """After a claim or a readmission: log what was set aside, send the outboxes again and
    wait for Kafka, then seek — each of `fresh` (newly owned) to its watermark, or the
    group's committed offset, or the beginning; any other position in `restored.seeks`
    back to where a readmitted shop's records were held (never forward)."""
    for shop_id, problem in restored.set_aside.items():
        aside = checkpoint.held.aside(shop_id)
        if aside is not None and aside.retry:
            log.warning("shop_waiting", shop_id=shop_id, cause=problem)
        elif aside is not None:
            log.error("shop_quarantined", shop_id=shop_id, cause=problem, release=RELEASE_HINT)
    await _resend(producer, restored, stopping, refusals)
    await checkpoint.acknowledged()
    await _seek(consumer, restored, set(fresh))


async def _resend(
    producer: AIOKafkaProducer, restored: Restored, stopping: Stopping, refusals: Refusals
) -> None:
    """Produce the outboxes again and wait for every acknowledgement (KafkaError). A record
    Kafka refuses for good is settled by `refusals` (daemon.service.delivery): it leaves its
    outbox with the others, so it never holds the restore back."""
    sent = await send_all(producer, restored.resend, refusals)
    futures = [future for _, future in sent]
    waited = 0.0
    while futures and not all(f.done() for f in futures):
        if stopping() or waited >= RESEND_TIMEOUT_S:
            for future in futures:
                future.add_done_callback(retrieve)
            raise KafkaTimeoutError(f"{len(futures)} outbox records not acknowledged")
        await asyncio.wait(futures, timeout=RESEND_CHECK_S)
        waited += RESEND_CHECK_S
    failure = None
    for record, future in sent:
        exc = future.exception()
        if exc is not None and refused_for_good(exc):
            refusals.refused(record, exc)
        elif exc is not None:
            failure = failure or exc
    if failure is not None:
        raise failure  # Kafka may get over it: the restore is retried


async def _seek(consumer: AIOKafkaConsumer, restored: Restored, fresh: set[TopicPartition]) -> None:
    for tp in fresh:
        mark = restored.seeks.get((tp.topic, tp.partition))
        if mark is not None:
            consumer.seek(tp, mark)
        elif (committed := await consumer.committed(tp)) is not None:
            consumer.seek(tp, committed)
        else:
            await consumer.seek_to_beginning(tp)
    for (topic, part), offset in restored.seeks.items():
        tp = TopicPartition(topic, part)
        if tp in fresh or tp not in consumer.assignment():
            continue
        if offset < await consumer.position(tp):
            consumer.seek(tp, offset)


class Ownership:
    """The input partitions this instance owns — assigned, claimed in Redis and restored —
    and the moves that change them. The service makes each move under its lock."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        stopping: Stopping,
        refusals: Refusals,
        metrics: Metrics,
        log: Any,
    ) -> None:
        self._checkpoint = checkpoint
        self._stopping = stopping
        self._refusals = refusals
        self._metrics = metrics
        self._log = log
        self.owned: set[TopicPartition] = set()
        self._assigned_at: float | None = None  # the last assignment, until records came
        self._release = False  # a reload's release of the quarantined shops is still to do
        self._unanswered = Repeats(UNANSWERED_LOG_S)  # `readmit_failed`, bounded

    @property
    def waiting(self) -> bool:
        """Whether shops or partitions wait for their Redis node, or a release of the
        quarantined shops for Redis (all retried by `readmit`)."""
        held = self._checkpoint.held
        return bool(held.waiting_partitions or held.waiting or self._release)

    def assigned(self) -> None:
        """A rebalance assigned partitions: the hand-off is timed until records come."""
        self._assigned_at = time.monotonic()

    def consuming(self, polled: Iterable[TopicPartition]) -> None:
        """The first records of an owned partition after an assignment: the daemon's own
        share of a hand-off (restore, then the first fetch) is over."""
        if self._assigned_at is None or not any(tp in self.owned for tp in polled):
            return
        took = time.monotonic() - self._assigned_at
        self._assigned_at = None
        self._metrics.handoff_seconds.observe(took)
        self._log.info("consuming", since_assigned_s=round(took, 3))

    async def restore(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        assigned: Iterable[TopicPartition],
    ) -> None:
        """Own `assigned` once their shops are back from Redis (`restore_partitions`): every
        shop set aside is claimed and loaded again, as at a start."""
        self.owned = set()
        self._release = False
        self.owned = await restore_partitions(
            self._checkpoint,
            consumer,
            producer,
            assigned,
            stopping=self._stopping,
            refusals=self._refusals,
            metrics=self._metrics,
            log=self._log,
        )

    async def readmit(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, *, released: bool
    ) -> None:
        """Serve again what was set aside: shops and partitions whose Redis node did not
        answer, and (`released`, after a reload) the quarantined shops. Their records are
        read again from where they were held; nothing was lost.

        Redis not answering a claim changes nothing: what was set aside stays set aside (its
        records held), the failure is logged (`readmit_failed`: the first, then at most one
        every UNANSWERED_LOG_S, saying how many were held back) and the service tries again
        (`waiting`), a reload's release included. A failure once claims went through leaves
        what is owned half moved: StoreError, and the service restores (as after any Redis
        failure). KafkaError when Kafka fails."""
        checkpoint, log, stopping = self._checkpoint, self._log, self._stopping
        refusals, held = self._refusals, checkpoint.held
        released = released or self._release
        shops = list(held.set_aside if released else held.waiting)
        try:
            readmitted = await checkpoint.readmit(shops)
        except StoreError as exc:
            self._release = released
            self._not_answered(exc)
            return
        self._release = False
        await resume(checkpoint, consumer, producer, readmitted, (), stopping=stopping,
                     refusals=refusals, log=log)  # fmt: skip
        assignment = {tp.partition for tp in consumer.assignment()}
        parts = [p for p in held.waiting_partitions if p in assignment]
        claimed: set[int] = set()
        try:
            claim = await checkpoint.claim(parts)
        except StoreError as exc:
            self._not_answered(exc)
        else:
            claimed = claim.owned
            fresh = {tp for tp in consumer.assignment() if tp.partition in claimed}
            await resume(checkpoint, consumer, producer, claim, fresh, stopping=stopping,
                         refusals=refusals, log=log)  # fmt: skip
            self.owned |= fresh
        back = [s for s in shops if held.aside(s) is None]
        if back or claimed:
            log.info("readmitted", shops=len(back), partitions=sorted(claimed))

    def _not_answered(self, exc: StoreError) -> None:
        held_back = self._unanswered.admit("readmit_failed")
        if held_back is not None:
            held = self._checkpoint.held
            self._log.warning(
                "readmit_failed", error=str(exc), shops=len(held.set_aside),
                partitions=sorted(held.waiting_partitions),
                **({"repeated": held_back} if held_back else {}),
            )  # fmt: skip

    def revoke(self, revoked: list[TopicPartition]) -> None:
        """A rebalance took these partitions: let them and their shops go."""
        self.owned -= set(revoked)
        self._checkpoint.release({tp.partition for tp in revoked})
        self._log.info("partitions_revoked", partitions=sorted({tp.partition for tp in revoked}))

    def lose(self, partitions: set[int]) -> None:
        """Another instance claimed these partitions (a checkpoint found them fenced): stop
        consuming them. The service then asks for a rebalance."""
        self.owned = {tp for tp in self.owned if tp.partition not in partitions}
        self._metrics.fenced.inc(len(partitions))
        self._log.warning("partitions_fenced", partitions=sorted(partitions))

    def wait(self, partitions: set[int]) -> None:
        """These partitions' bookkeeping did not answer: stop consuming them until a
        `readmit` claims them again."""
        self.owned = {tp for tp in self.owned if tp.partition not in partitions}
        self._log.warning("partitions_waiting", partitions=sorted(partitions))


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Hands partition moves to the service's callbacks (which take its lock)."""

    def __init__(self, revoked: PartitionsMoved, assigned: PartitionsMoved) -> None:
        self._revoked, self._assigned = revoked, assigned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._assigned(assigned)
