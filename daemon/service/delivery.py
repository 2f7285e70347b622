"""Handing checkpointed outputs to Kafka and waiting for its acknowledgements (CONTRACT 6).

`Deliveries.send` hands a batch's outbox records to the producer all at once (they leave
together without a linger: daemon.service.clients) and keeps their delivery futures.
`settle` waits until Kafka acknowledged every one, empties the outboxes in Redis
(daemon.service.checkpoint) and commits the group's offsets — kept for lag tooling only:
Redis holds the positions. While acknowledgements are overdue (Kafka unreachable) it says
so, and the service reports not ready and fetches nothing. A record Kafka refused, or
outboxes Redis did not empty, come back as the failure that sends the service to recover
(restore the owned shops, which sends the outboxes again). `drop` stops waiting: what is
unacknowledged stays in the outboxes in Redis and is sent again by the next restore, or at
the next start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from daemon.service.checkpoint import Checkpoint
from daemon.service.store import OutboxRecord, StoreError

ACK_PATIENCE_S = 1.0  # acknowledgements later than this: report not ready while waiting
COMMIT_TIMEOUT_S = 2.0  # the group commit (informational; it hangs while Kafka is away)
STOP_ACK_WAIT_S = 3.0  # stopping: how long to wait for outstanding acknowledgements

Failure = tuple[str, BaseException]  # the component that failed ("kafka", "redis"), and how


class Deliveries:
    """The outputs handed to the producer and not yet settled; `sent` counts records."""

    def __init__(self, checkpoint: Checkpoint, log: Any) -> None:
        self._checkpoint = checkpoint
        self._log = log
        self._unacked: list[asyncio.Future[Any]] = []
        self.sent = 0

    @property
    def pending(self) -> bool:
        """Whether outputs were sent since the last settle."""
        return bool(self._unacked)

    async def send(self, producer: AIOKafkaProducer, records: list[OutboxRecord]) -> None:
        """Hand records to the producer, all before its sender runs; keep the delivery futures."""
        self.sent += len(records)
        self._unacked += [await producer.send(r.topic, r.value, r.key) for r in records]

    async def settle(
        self,
        consumer: AIOKafkaConsumer,
        *,
        stopping: Callable[[], bool],
        overdue: Callable[[], None],
    ) -> Failure | None:
        """Wait until Kafka acknowledged every output sent, empty the outboxes, commit; what
        failed, if anything.

        `overdue` is called once when acknowledgements are later than ACK_PATIENCE_S. Once
        `stopping` it waits at most STOP_ACK_WAIT_S: what is still unacknowledged stays in
        the outboxes in Redis and is sent again at the next start.
        """
        pending = [f for f in self._unacked if not f.done()]
        slow = False
        give_up: float | None = None
        while pending:
            if stopping() and give_up is None:
                give_up = time.monotonic() + STOP_ACK_WAIT_S
            if give_up is not None and time.monotonic() >= give_up:
                self._log.warning("stopped_with_outputs_unacknowledged", pending=len(pending))
                self.drop()
                return None
            _, still = await asyncio.wait(pending, timeout=ACK_PATIENCE_S)
            pending = list(still)
            if pending and not slow:
                slow = True
                overdue()
                self._log.warning("kafka_acks_overdue", pending=len(pending))
        failed = [e for f in self._unacked if (e := f.exception()) is not None]
        self._unacked.clear()
        if failed:
            return ("kafka", failed[0])
        if slow:
            self._log.info("kafka_acks_resumed")
        try:
            await self._checkpoint.acknowledged()
        except StoreError as exc:
            return ("redis", exc)
        if not consumer.assignment():
            return None
        try:  # informational only (Redis holds the positions); it hangs while Kafka is away
            await asyncio.wait_for(consumer.commit(), timeout=COMMIT_TIMEOUT_S)
        except (KafkaError, TimeoutError) as exc:
            self._log.warning("kafka_commit_failed", error=str(exc) or type(exc).__name__)
        return None

    def drop(self) -> None:
        """Stop waiting for deliveries; their records stay in the outboxes in Redis."""
        if self._unacked:
            self._checkpoint.abandoned = True
        for future in self._unacked:
            future.add_done_callback(retrieve)
        self._unacked.clear()


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a dropped delivery future's outcome as seen (its record is re-sent anyway)."""
    if not future.cancelled():
        future.exception()
