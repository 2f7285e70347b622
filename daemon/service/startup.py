"""What `fenliu run` waits for before it routes: Kafka answering, with the input topics there.

contract §6: a daemon started before Kafka is reachable stays up — `/healthz` 200, `/readyz`
503 — and starts routing when Kafka comes. `Service.run` (daemon.service.run) therefore
listens on HTTP first and then calls `wait_for_kafka`, which tries `connect` until it
succeeds: read the input topics' partition counts (`check_partitions`), then start the
producer and the consumer. Between attempts it waits with capped exponential backoff
(FIRST_RETRY_S doubling to MAX_RETRY_S); a stop request (SIGTERM) ends the wait, the
attempt in hand included, within STOP_POLL_S.

What an attempt can find, and what start-up does about it (docs/daemon.md, "Start-up order
and exit codes"):

    Kafka does not answer, or fails the request (refused,    wait: `kafka_unreachable`
      timed out, TLS or SASL failing, a broker error)
    an input topic does not exist                            wait: `input_topics_missing`
      (`fenliu topics create` may still be on its way;
      a misspelt name keeps /readyz at 503 and says so)
    the input topics disagree on their partition count       StartupError: exit 2, a
      (creating a topic changes no other's count;              configuration error
      waiting cannot mend it)

Redis is not waited for here: a restore that finds Redis away at the first assignment
sends the service to its outage recovery (`_recover`), which retries the same way.

The log stays bounded (`WaitLog`): a wait's first failure is logged at once, the same
failure again at most once every REPEAT_LOG_S with the attempts held back (`repeated`),
and `kafka_reachable` once it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from daemon.config import KafkaConfig
from daemon.service.clients import (
    TopicsAdminError,
    TopicsMissingError,
    check_partitions,
    close_within,
    make_consumer,
    make_producer,
)

T = TypeVar("T")

FIRST_RETRY_S, MAX_RETRY_S = 0.2, 5.0  # the wait between attempts: doubling, capped
REPEAT_LOG_S = 60.0  # the same failure is logged again at most this often
STOP_POLL_S = 0.1  # how often a wait looks at the stop flag

Clients = tuple[AIOKafkaConsumer, AIOKafkaProducer]


class Stopped(Exception):
    """A stop was requested while waiting."""


class WaitLog:
    """The log lines of one wait: bounded however long it lasts (see the module docstring)."""

    def __init__(
        self,
        log: Any,
        *,
        every_s: float = REPEAT_LOG_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.every_s = every_s
        self.clock = clock
        self.attempts = 0  # failed attempts so far
        self._started: float | None = None
        self._last: tuple[str, float] | None = None  # the event last written, and when
        self._held = 0  # failures like it not written since

    def failed(self, event: str, **fields: Any) -> None:
        """An attempt failed: `event` (warning) unless the same was written < every_s ago."""
        now = self.clock()
        if self._started is None:
            self._started = now
        self.attempts += 1
        if self._last is not None and self._last[0] == event:
            if now - self._last[1] < self.every_s:
                self._held += 1
                return
            fields["repeated"] = self._held
        self.log.warning(
            event, attempts=self.attempts, waiting_s=round(now - self._started, 1), **fields
        )
        self._last, self._held = (event, now), 0

    def ended(self) -> None:
        """The wait is over: `kafka_reachable`, if anything failed before."""
        if self._started is not None:
            waited = round(self.clock() - self._started, 1)
            self.log.info("kafka_reachable", attempts=self.attempts, waited_s=waited)


async def unless_stopped(awaitable: Awaitable[T], stopping: Callable[[], bool]) -> T:
    """Await `awaitable`, looking at `stopping` every STOP_POLL_S: once it says so, cancel
    the work and raise `Stopped`."""
    task = asyncio.ensure_future(awaitable)
    try:
        while not task.done():
            if stopping():
                task.cancel()
                await asyncio.wait({task})
                if not task.cancelled():
                    task.exception()  # retrieved: of no interest any more
                raise Stopped
            await asyncio.wait({task}, timeout=STOP_POLL_S)
        return task.result()
    finally:
        if not task.done():  # we were cancelled ourselves
            task.cancel()


async def connect(
    kafka: KafkaConfig, inputs: list[str], security: dict[str, Any], log: Any
) -> Clients:
    """One attempt: check the input topics, then start the producer and the consumer.

    Raises what `check_partitions` raises, or the clients' errors (each client started is
    closed again first).
    """
    await check_partitions(kafka.bootstrap_servers, inputs, security)
    consumer = make_consumer(kafka, security)
    producer = make_producer(kafka, security)
    try:
        await producer.start()
        await consumer.start()
    except BaseException:
        await close_within(consumer.stop(), "consumer", log)
        await close_within(producer.stop(), "producer", log)
        raise
    return consumer, producer


async def wait_for_kafka(
    kafka: KafkaConfig,
    inputs: list[str],
    security: dict[str, Any],
    *,
    stopping: Callable[[], bool],
    log: Any,
) -> Clients | None:
    """`connect` until it succeeds: the started clients, or None if asked to stop first.

    Raises StartupError for a configuration error (input topics with different partition
    counts); everything else is waited out (module docstring).
    """
    waits = WaitLog(log)
    delay = FIRST_RETRY_S
    while True:
        try:
            clients = await unless_stopped(connect(kafka, inputs, security, log), stopping)
        except Stopped:
            return None
        except TopicsMissingError as exc:
            waits.failed(
                "input_topics_missing", topics=exc.missing, retry_in_s=delay,
                hint="create them with `fenliu topics create --config FILE`",
            )  # fmt: skip
        except (TopicsAdminError, KafkaError, OSError) as exc:
            waits.failed(
                "kafka_unreachable", bootstrap=kafka.bootstrap_servers, retry_in_s=delay,
                error=str(exc) or type(exc).__name__,
            )  # fmt: skip
        else:
            waits.ended()
            return clients
        try:
            await unless_stopped(asyncio.sleep(delay), stopping)
        except Stopped:
            return None
        delay = min(delay * 2, MAX_RETRY_S)
