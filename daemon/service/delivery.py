"""Handing checkpointed outputs to Kafka and waiting for its acknowledgements (contract §6).

`Deliveries.send` hands a batch's outbox records to the producer all at once (they leave
together without a linger: daemon.service.clients) and keeps their delivery futures.
`settle` waits until Kafka acknowledged every one, empties the outboxes in Redis
(daemon.service.checkpoint) and commits the group's offsets — kept for lag tooling only:
Redis holds the positions. While acknowledgements are overdue (Kafka unreachable) it says
so, and the service reports not ready and fetches nothing. A failure Kafka may get over
(unreachable, a timeout, a leader moving), or outboxes Redis did not empty, come back as the
failure that sends the service to recover (restore the owned shops, which sends the
outboxes again). `drop` stops waiting: what is unacknowledged stays in the outboxes in Redis
and is sent again by the next restore, or at the next start.

**Refused for good.** A record Kafka (or the producer itself) refuses whatever the retries —
too large, an invalid or forbidden topic: `REFUSALS` — would crash-loop the service if it
were sent again. `Refusals` settles it instead: it is dropped from its outbox like an
acknowledged one (so neither a restart nor the next owner inherits it), logged
(`output_refused`) and counted (`fenliu_outputs_undelivered_total{type, cause="refused"}`),
and the shop of a routing output (assignment, session_closed, queue_update) is set aside,
quarantined with the cause: its later records are held, not lost, until the cause is fixed
and a restart or reload readmits it. A refused dead letter sets no shop aside: the record it
describes stays in its source topic. Restores (daemon.service.restore) do the same.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    PolicyViolationError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)

from daemon.service.checkpoint import Checkpoint
from daemon.service.metrics import OUTPUT_TYPES, Metrics
from daemon.service.store import OutboxRecord, StoreError

ACK_PATIENCE_S = 1.0  # acknowledgements later than this: report not ready while waiting
COMMIT_TIMEOUT_S = 2.0  # the group commit (informational; it hangs while Kafka is away)
STOP_ACK_WAIT_S = 3.0  # stopping: how long to wait for outstanding acknowledgements
RELEASE_REFUSED = (
    "its records are held, not lost: fix the cause (the topic, its ACLs, the broker's or "
    "topic's size limits), then restart or reload (SIGHUP) to serve it again"
)

REFUSALS: Final[tuple[type[KafkaError], ...]] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    InvalidTopicError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
    PolicyViolationError,
    InvalidTimestampError,
)
"""Errors that say the record or its topic is refused whatever the retries. Every other
error (timeouts, connections, an unknown server error) keeps the recover-with-backoff path:
aiokafka marks some of those not retriable too (KafkaTimeoutError), so `retriable` alone
would set shops aside during an outage."""

Failure = tuple[str, BaseException]  # the component that failed ("kafka", "redis"), and how
Sent = tuple[OutboxRecord, "asyncio.Future[Any]"]


def refused_for_good(exc: BaseException) -> bool:
    """Whether Kafka refused a record for good (`REFUSALS`): sending it again cannot help."""
    return isinstance(exc, REFUSALS)


def failed(exc: BaseException) -> asyncio.Future[Any]:
    """A delivery future that already failed with `exc` (a send the producer refused)."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


async def send_all(
    producer: AIOKafkaProducer, records: Iterable[OutboxRecord], refusals: Refusals
) -> list[Sent]:
    """Hand records to the producer; the delivery futures. One the producer refuses for good
    (too large) is settled by `refusals`; any other failure ends the sending with a failed
    future (what was not handed over stays in its outbox and is sent again by a restore)."""
    sent: list[Sent] = []
    for record in records:
        try:
            sent.append((record, await producer.send(record.topic, record.value, record.key)))
        except KafkaError as exc:
            if not refused_for_good(exc):
                sent.append((record, failed(exc)))
                break
            refusals.refused(record, exc)
    return sent


def _described(value: bytes) -> tuple[str, str | None]:
    """An output record's event type (one of OUTPUT_TYPES, else "unknown") and id."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return "unknown", None
    if not isinstance(event, dict):
        return "unknown", None
    kind, id_ = event.get("type"), event.get("id")
    return (kind if kind in OUTPUT_TYPES else "unknown"), (str(id_)[:200] if id_ else None)


class Refusals:
    """Settles the outputs Kafka refused for good (see the module docstring). `forget` is
    told the shops set aside (the JSON API's last decisions drop them)."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        dead_letter_topic: str,
        metrics: Metrics,
        log: Any,
        forget: Callable[[list[str]], None],
    ) -> None:
        self._checkpoint = checkpoint
        self._dead_letter_topic = dead_letter_topic
        self._metrics = metrics
        self._log = log
        self._forget = forget

    def refused(self, record: OutboxRecord, exc: BaseException) -> None:
        """Log and count a refused record; set its shop aside if it is a routing output."""
        kind, id_ = _described(record.value)
        name, text = type(exc).__name__, str(exc)
        error = text if name in text else f"{name}: {text}"
        self._metrics.undelivered.labels(kind, "refused").inc()
        shop_id = self._shop_of(record)
        self._log.error(
            "output_refused", topic=record.topic, type=kind, id=id_, shop_id=shop_id,
            bytes=len(record.value), error=error,
        )  # fmt: skip
        if shop_id is not None:
            cause = f"Kafka refused output {id_} to {record.topic} for good: {error}"
            self.set_aside(shop_id, cause)

    def set_aside(self, shop_id: str, cause: str) -> None:
        """Quarantine a shop whose output cannot be delivered; the others go on."""
        checkpoint = self._checkpoint
        if checkpoint.held.aside(shop_id) is not None:
            return
        checkpoint.put_aside(shop_id, cause)
        self._forget([shop_id])
        self._log.error("shop_quarantined", shop_id=shop_id, cause=cause, release=RELEASE_REFUSED)

    def _shop_of(self, record: OutboxRecord) -> str | None:
        """The owned shop of a routing output (keyed by its shop id), else None."""
        if record.topic == self._dead_letter_topic or record.key is None:
            return None
        try:
            shop_id = record.key.decode()
        except UnicodeDecodeError:
            return None
        return shop_id if self._checkpoint.held.owns(shop_id) else None


class Deliveries:
    """The outputs handed to the producer and not yet settled; `sent` counts records."""

    def __init__(self, checkpoint: Checkpoint, refusals: Refusals, log: Any) -> None:
        self._checkpoint = checkpoint
        self._refusals = refusals
        self._log = log
        self._unacked: list[Sent] = []
        self.sent = 0

    @property
    def pending(self) -> bool:
        """Whether outputs were sent since the last settle."""
        return bool(self._unacked)

    async def send(self, producer: AIOKafkaProducer, records: list[OutboxRecord]) -> None:
        """Hand records to the producer, all before its sender runs; keep the delivery futures
        (`send_all`: a record refused for good is settled at once)."""
        self.sent += len(records)
        self._unacked += await send_all(producer, records, self._refusals)

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
        pending = [f for _, f in self._unacked if not f.done()]
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
        failure = self._outcomes()
        if failure is not None:
            return ("kafka", failure)
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

    def _outcomes(self) -> BaseException | None:
        """Every delivery is done: settle those refused for good; the first other failure."""
        failures = []
        for record, future in self._unacked:
            exc = future.exception()
            if exc is None:
                continue
            if refused_for_good(exc):
                self._refusals.refused(record, exc)
            else:
                failures.append(exc)
        self._unacked.clear()
        return failures[0] if failures else None

    def drop(self) -> None:
        """Stop waiting for deliveries; their records stay in the outboxes in Redis."""
        if self._unacked:
            self._checkpoint.abandon()
        for _, future in self._unacked:
            future.add_done_callback(retrieve)
        self._unacked.clear()


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a dropped delivery future's outcome as seen (its record is re-sent anyway)."""
    if not future.cancelled():
        future.exception()
