"""`fenliu run`: the asyncio shell around the routing engine (CONTRACT 1, 5, 6, 7, 8).

One loop, nothing hidden in background tasks:

    poll a batch (getmany, waiting at most until the engine's next deadline)
    → decode → feed the engine partition by partition, the three topics merged by `ts`
    → fire due timers → checkpoint to Redis: changed state, offsets, outbox (daemon.service.store)
    → hand every output to the producer (batched by its linger)
    → every COMMIT_EVERY_S: wait for the acknowledgements, empty the outboxes, commit

The wait in `getmany` is the one timer: it never sleeps past the engine's next deadline, so
session timeouts, queue updates and `max_wait` fire on time without any input. Signal
handlers only set flags: SIGTERM/SIGINT stop after the batch in hand (flush, commit, exit 0),
SIGHUP reloads the configuration between batches. A reload that fails validation changes
nothing and is logged and counted.

Redis is the source of truth. No output reaches Kafka before the checkpoint that decided it;
on every partition assignment (and after any outage) the owned shops are loaded from Redis,
their outboxes are sent again with the same ids, and each input partition is read again from
its watermark — records a shop already reflects are skipped by offset. Kafka group commits
are kept for lag tooling only. A rebalance listener takes the same lock as a batch, so a
revoke waits for the batch in hand.

A fleet: loading a partition claims it in Redis, so an instance that missed a rebalance
finds its next checkpoint fenced, publishes nothing of it and lets the partition go
(`_lost`). One shop's trouble stays that shop's: an engine failure quarantines it, a Redis
Cluster node that does not answer makes it wait, and either way its records are held and
read again when it is readmitted (daemon.service.checkpoint, "Set aside").

Around it, in daemon.service: clients (the Kafka and Redis clients, the startup check),
restore (the restore itself and the rebalance listener), control_plane (HTTP routes, reload),
readiness (what /readyz and the lag metric read) and record_log (rejections and decisions as
log lines).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from daemon.config import ConfigError, FenliuConfig, load_config
from daemon.core.engine import Engine, EventRejected
from daemon.service.checkpoint import Batch, Checkpoint
from daemon.service.clients import (
    StartupError,
    check_partitions,
    close_within,
    kafka_client_kwargs,
    make_consumer,
    make_producer,
    make_redis,
    request_rejoin,
    skip_leave_group,
)
from daemon.service.clock import wall_ms
from daemon.service.control_plane import apply_reload, routes
from daemon.service.http import HttpServer
from daemon.service.kafka import Decoded, TopicMap, ordered_batch
from daemon.service.logs import get_logger
from daemon.service.metrics import Metrics
from daemon.service.readiness import consumer_lag, partitions_fresh, redis_answers
from daemon.service.record_log import dead_letter, log_decision
from daemon.service.restore import RELEASE_HINT, Rebalance, restore_partitions, resume, retrieve
from daemon.service.store import OutboxRecord, Store, StoreError
from topics.codec import DecodeError, decode, encode, type_name
from topics.events import InputEvent, OutputEvent

MAX_RECORDS = 5000  # records per poll
COMMIT_EVERY_S = 0.2  # acknowledgements are awaited and offsets committed this often
MAX_WAIT_MS = 1000  # longest poll wait, so flags are seen within a second
POLL_GUARD_S = 2.0  # a poll that waits longer is waiting for a rebalance: stop waiting
REDIS_PING_EVERY_S = 2.0
RETRY_WAITING_S = 1.0  # shops and partitions waiting for their Redis node: retried this often
ACK_PATIENCE_S = 1.0  # acknowledgements later than this: report not ready while waiting
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.1, 5.0  # retrying after an outage
COMMIT_TIMEOUT_S = 2.0  # the group commit (informational; it hangs while Kafka is away)
STOP_ACK_WAIT_S = 3.0  # stopping: how long to wait for outstanding acknowledgements
EXIT_OK, EXIT_CONFIG = 0, 2


class Service:
    """The running daemon. `run()` returns the process exit code."""

    def __init__(
        self,
        config: FenliuConfig,
        *,
        clock: Callable[[], int] = wall_ms,
        install_signals: bool = True,
    ) -> None:
        self.config = config
        self.clock = clock
        self.install_signals = install_signals
        self.engine = Engine(config.shop_configs, track=True)
        self.redis = make_redis(config.redis)
        self.store = Store(
            self.redis, config.redis.key_prefix, dedup_capacity=self.engine.dedup_capacity
        )
        self.checkpoint = Checkpoint(self.engine, self.store)
        self.metrics = Metrics()
        self.topics = TopicMap(config.kafka.topics)
        self.log = get_logger()
        self.ready = False
        self.http_port: int | None = None
        self._stopping = False
        self._reloads: list[asyncio.Future[str]] = []
        self._redis_ok = False
        self._broken: str | None = None  # what failed; cleared once the state is restored
        self._restore_next = False  # a reload asked for the owned shops to be restored
        self._readmit_next = False  # a reload asked for the quarantined shops to be served
        self._assigned_at: float | None = None  # the last assignment, until records came
        self._lock = asyncio.Lock()  # a batch, a settle, a restore or a rebalance at a time
        self._owned: set[TopicPartition] = set()  # assigned and restored
        self._unacked: list[asyncio.Future[Any]] = []
        self._positions: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._counts = {"in": 0, "out": 0, "rejected": 0}
        self._misrouted_logged: set[tuple[str, str, int]] = set()
        self.metrics.watch(
            lambda: self.engine,
            lambda: consumer_lag(self._consumer, self._positions),
            lambda: {s: a.retry for s, a in self.checkpoint.set_aside.items()},
        )

    # ------------------------------------------------------------------ control (flags)

    def request_stop(self) -> None:
        """Stop after the batch in hand (signal-safe: only sets a flag)."""
        self._stopping = True

    def request_reload(self) -> asyncio.Future[str]:
        """Reload between batches; the future says how it went."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reloads.append(future)
        return future

    # ----------------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        """Start, serve until asked to stop, shut down cleanly; the exit code."""
        kafka = self.config.kafka
        security = kafka_client_kwargs(kafka)
        inputs = list(self.topics.inputs)
        try:
            await check_partitions(kafka.bootstrap_servers, inputs, security)
        except StartupError as exc:
            self.log.error("startup_refused", reason=str(exc))
            return EXIT_CONFIG
        consumer = make_consumer(kafka, security)
        producer = make_producer(kafka, security)
        http = HttpServer(routes(self), self.config.http.host, self.config.http.port)
        await http.start()
        self.http_port = http.port
        await producer.start()
        await consumer.start()
        listener = Rebalance(
            revoked=lambda tps: self._on_revoked(consumer, tps),
            assigned=lambda tps: self._on_assigned(consumer, producer, tps),
        )
        consumer.subscribe(inputs, listener=listener)
        self._consumer = consumer
        self._install_signals()
        self.log.info(
            "service_started",
            shops=len(self.engine.shops),
            topics=inputs,
            group_id=kafka.group_id,
            http_port=self.http_port,
            redis=self.config.redis.redacted_url,
        )
        try:
            await self._loop(consumer, producer)
        finally:
            self.ready = False
            self._remove_signals()
            if not kafka.leave_group:
                skip_leave_group(consumer)
            await close_within(consumer.stop(), "consumer", self.log)
            await close_within(producer.stop(), "producer", self.log)
            await close_within(self.redis.aclose(), "redis", self.log)
            await close_within(http.close(), "http", self.log)
            self.log.info("service_stopped", **self._counts)
        return EXIT_OK

    def _install_signals(self) -> None:
        if not self.install_signals:
            return
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.request_reload() and None)

    def _remove_signals(self) -> None:
        if not self.install_signals:
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    # ------------------------------------------------------------------------ the loop

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        last_ping = last_settle = last_retry = 0.0
        while not self._stopping:
            if self._broken is not None:
                await self._recover(consumer, producer)
                continue
            if self._restore_next:
                self._restore_next = False
                self._broken = "reload"  # not a failure: `_recover` restores the partitions
                continue
            if self._readmit_next or (
                self._has_waiting() and time.monotonic() - last_retry >= RETRY_WAITING_S
            ):
                last_retry = time.monotonic()
                async with self._lock:
                    await self._readmit(consumer, producer)
            reload_outputs = self._reload() if self._reloads else []
            deadline = self.engine.next_deadline()
            wait = MAX_WAIT_MS if deadline is None else deadline - self.clock()
            try:  # getmany waits without limit for the assignment while the group rebalances
                batch = await asyncio.wait_for(
                    consumer.getmany(
                        timeout_ms=max(0, min(MAX_WAIT_MS, wait)), max_records=MAX_RECORDS
                    ),
                    timeout=POLL_GUARD_S,
                )
            except TimeoutError:
                batch = {}  # still rebalancing: look at the flags (SIGTERM) and timers
            if self._assigned_at is not None and any(tp in self._owned for tp in batch):
                self._consuming()
            async with self._lock:
                await self._step(producer, batch, reload_outputs)
                if self._unacked and time.monotonic() - last_settle >= COMMIT_EVERY_S:
                    await self._settle(consumer)
                    last_settle = time.monotonic()
            if time.monotonic() - last_ping > REDIS_PING_EVERY_S:
                last_ping = time.monotonic()
                self._redis_ok = await redis_answers(
                    self.store, was_ok=self._redis_ok, log=self.log
                )
            self.ready = self._is_ready(consumer)
        async with self._lock:
            if self._broken is None:
                await self._settle(consumer)

    async def _step(
        self,
        producer: AIOKafkaProducer,
        batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
        reload_outputs: list[OutputEvent],
    ) -> None:
        """Apply a batch and the due timers, checkpoint, then hand the outputs to Kafka.

        Nothing reaches Kafka before its checkpoint is in Redis. A failed checkpoint leaves
        the engine ahead of Redis: the batch's outputs are dropped and the service restores
        the checkpointed state before it goes on (`_recover`).
        """
        if self._broken is not None:
            return
        now = self.clock()
        work = Batch()
        for event in reload_outputs:
            self._add_output(work, event, None)
        owned = {tp: records for tp, records in batch.items() if tp in self._owned}
        self._apply(work, owned, now)
        self._fire_timers(work, now)
        started = time.perf_counter()
        try:
            saved = await self.checkpoint.save(work)
        except StoreError as exc:
            self.metrics.checkpoints.labels("failed").inc()
            self._break("redis", exc)
            return
        self.metrics.checkpoints.labels("ok").inc()
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
        if saved.lost:
            self._lost(saved.lost)
        if saved.waiting:
            self._owned = {tp for tp in self._owned if tp.partition not in saved.waiting}
            self.log.warning("partitions_waiting", partitions=sorted(saved.waiting))
        self._unacked += await self._send(producer, saved.sends)

    def _has_waiting(self) -> bool:
        checkpoint = self.checkpoint
        return bool(checkpoint.waiting_partitions or checkpoint.waiting)

    async def _readmit(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        """Serve again what was set aside: shops and partitions whose Redis node did not
        answer (tried every RETRY_WAITING_S), and after a reload the quarantined shops.
        Their records are read again from where they were held; nothing was lost."""
        checkpoint, released = self.checkpoint, self._readmit_next
        self._readmit_next = False
        shops = list(checkpoint.set_aside if released else checkpoint.waiting)
        try:
            readmitted = await checkpoint.readmit(shops)
            await resume(checkpoint, consumer, producer, readmitted, (), stopping=self._stop_flag,
                         log=self.log)  # fmt: skip
            parts = [p for p in checkpoint.waiting_partitions if p in _partitions(consumer)]
            claimed = await checkpoint.claim(parts)
            fresh = {tp for tp in consumer.assignment() if tp.partition in claimed.owned}
            await resume(checkpoint, consumer, producer, claimed, fresh, stopping=self._stop_flag,
                         log=self.log)  # fmt: skip
        except StoreError:
            return  # still unreachable: tried again in RETRY_WAITING_S
        except (KafkaError, OSError) as exc:
            self._break("kafka", exc)
            return
        self._owned |= fresh
        back = [s for s in shops if s not in checkpoint.set_aside]
        if back or claimed.owned:
            self.log.info("readmitted", shops=len(back), partitions=sorted(claimed.owned))

    def _stop_flag(self) -> bool:
        return self._stopping

    def _fire_timers(self, work: Batch, now: int) -> None:
        """Fire the due timers of every shop; a shop whose engine fails is quarantined."""
        engine = self.engine
        for shop_id in engine.due(now):
            try:
                outputs = engine.fire(shop_id, now)
            except Exception as exc:  # noqa: BLE001 - the shop's supervisor: quarantine it
                self._quarantine(work, shop_id, exc)
                continue
            for event in outputs:
                self._add_output(work, event, None)

    def _quarantine(self, work: Batch, shop_id: str, exc: BaseException) -> None:
        """Set a shop aside after its engine failed (daemon.service.checkpoint): the others go
        on."""
        cause = f"engine failed: {type(exc).__name__}: {exc}"
        self.checkpoint.put_aside(shop_id, cause, work)
        self.log.error(
            "shop_quarantined", shop_id=shop_id, cause=cause, release=RELEASE_HINT,
            exc_info=exc,
        )  # fmt: skip

    def _lost(self, partitions: set[int]) -> None:
        """Another instance claimed these partitions: stop consuming them and ask for a
        rebalance. Usually this instance missed one and the group has moved on; if instead
        the other claimed late from an assignment the group has since replaced, the
        rebalance has the rightful owner claim them again."""
        self._owned = {tp for tp in self._owned if tp.partition not in partitions}
        self.metrics.fenced.inc(len(partitions))
        self.log.warning("partitions_fenced", partitions=sorted(partitions))
        if self._consumer is not None:
            request_rejoin(self._consumer)

    def _apply(
        self, work: Batch, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]], now: int
    ) -> None:
        engine, checkpoint = self.engine, self.checkpoint
        for _, items in ordered_batch(batch, list(self.topics.inputs), self._decode):
            for item in items:
                record = item.record
                topic, part, offset = record.topic, record.partition, record.offset
                self._positions[TopicPartition(topic, part)] = offset + 1
                event = item.event
                shop_id = event.shop_id if event is not None else _key_text(record.key)
                home = configured = None  # the shop if configured; and if on its partition
                if shop_id is not None and shop_id in engine.shops:
                    configured = shop_id
                    home = shop_id if checkpoint.home(shop_id) == part else None
                if checkpoint.seen_before(home, topic, part, offset):
                    checkpoint.consumed(work, None, topic, part, offset)
                    continue  # already in the restored state, or rejected before
                checkpoint.consumed(work, home, topic, part, offset)
                self._counts["in"] += 1
                if event is None:
                    assert item.error is not None
                    self._add_output(work, self._reject(record, item.error, now, "invalid"), part)
                elif configured is not None and home is None:
                    self._add_output(work, self._misrouted(record, event.shop_id, now), part)
                elif home not in checkpoint.set_aside:  # else held: read again on readmission
                    self._handle(work, record, event, part, now)

    def _handle(
        self, work: Batch, record: ConsumerRecord[Any, Any], event: InputEvent, part: int, now: int
    ) -> None:
        """Feed one event to the engine; a shop whose engine fails is quarantined."""
        engine = self.engine
        self.metrics.events_in.labels(record.topic, type_name(event)).inc()
        started = time.perf_counter()
        try:
            outputs = engine.handle(event, now)
        except EventRejected as rejected:
            outputs = rejected.outputs
            kind = "unknown_shop" if event.shop_id not in engine.shops else "refused"
            outputs.append(self._reject(record, rejected.reason, now, kind))
        except Exception as exc:  # noqa: BLE001 - the shop's supervisor: quarantine it
            self._quarantine(work, event.shop_id, exc)
            return
        self.metrics.decision_seconds.observe(time.perf_counter() - started)
        for output in outputs:
            self._add_output(work, output, part)

    def _misrouted(self, record: ConsumerRecord[Any, Any], shop_id: str, now: int) -> OutputEvent:
        """The dead letter of a record on another partition than its shop's (CONTRACT 1);
        logged once per topic, shop and partition found, counted every time."""
        home = self.checkpoint.home(shop_id)
        reason = (
            f"shop {shop_id!r} belongs on partition {home} of {record.topic}, found on "
            f"{record.partition}: the producer is not using the murmur2 partitioner "
            "(librdkafka: partitioner=murmur2_random)"
        )
        self.metrics.misrouted.labels(record.topic).inc()
        pattern = (record.topic, shop_id, record.partition)
        if pattern not in self._misrouted_logged:
            self._misrouted_logged.add(pattern)
            self.log.error(
                "records_misrouted", shop_id=shop_id, topic=record.topic,
                partition=record.partition, belongs_on=home, reason=reason,
            )  # fmt: skip
        return self._reject(record, reason, now, "misrouted", logged=False)

    def _add_output(self, work: Batch, event: OutputEvent, part: int | None) -> None:
        key = event.shop_id.encode() if event.shop_id is not None else None
        record = OutboxRecord(self.topics.output_topic(event), key, encode(event))
        checkpoint = self.checkpoint
        checkpoint.output(work, checkpoint.owner_of(event.shop_id, part), record)
        self.metrics.decided([event])
        log_decision(self.log, event)

    async def _settle(self, consumer: AIOKafkaConsumer) -> None:
        """Wait until Kafka acknowledged every output sent, empty the outboxes, commit.

        While acknowledgements are overdue (Kafka unreachable) the service reports not
        ready and fetches nothing; an output Kafka refused sends the service to `_recover`,
        which sends the outboxes again. Once the service is stopping it waits at most
        STOP_ACK_WAIT_S: what is still unacknowledged stays in the outboxes in Redis and is
        sent again at the next start.
        """
        pending = [f for f in self._unacked if not f.done()]
        slow = False
        give_up: float | None = None
        while pending:
            if self._stopping and give_up is None:
                give_up = time.monotonic() + STOP_ACK_WAIT_S
            if give_up is not None and time.monotonic() >= give_up:
                self.log.warning("stopped_with_outputs_unacknowledged", pending=len(pending))
                self._drop_unacked()
                return
            _, still = await asyncio.wait(pending, timeout=ACK_PATIENCE_S)
            pending = list(still)
            if pending and not slow:
                slow, self.ready = True, False
                self.log.warning("kafka_acks_overdue", pending=len(pending))
        failed = [e for f in self._unacked if (e := f.exception()) is not None]
        self._unacked.clear()
        if failed:
            self._break("kafka", failed[0])
            return
        if slow:
            self.log.info("kafka_acks_resumed")
        try:
            await self.checkpoint.acknowledged()
        except StoreError as exc:
            self._break("redis", exc)
            return
        if not consumer.assignment():
            return
        try:  # informational only (Redis holds the positions); it hangs while Kafka is away
            await asyncio.wait_for(consumer.commit(), timeout=COMMIT_TIMEOUT_S)
        except (KafkaError, TimeoutError) as exc:
            self.log.warning("kafka_commit_failed", error=str(exc) or type(exc).__name__)

    # ---------------------------------------------------------------- outages & restore

    def _break(self, component: str, exc: BaseException) -> None:
        """Stop consuming until `_recover` has brought back the checkpointed state."""
        if self._broken is None:
            self.log.error(f"{component}_failed", error=str(exc) or type(exc).__name__)
        self._broken = component
        self.ready = False
        self._drop_unacked()

    def _drop_unacked(self) -> None:
        """Stop waiting for deliveries; their records stay in the outboxes in Redis."""
        if self._unacked:
            self.checkpoint.abandoned = True
        for future in self._unacked:
            future.add_done_callback(retrieve)
        self._unacked.clear()

    async def _recover(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        """Retry, with capped exponential backoff, restoring the owned shops from Redis."""
        delay = BACKOFF_FIRST_S
        while not self._stopping:
            async with self._lock:
                try:
                    await self._restore(consumer, producer, consumer.assignment())
                except (StoreError, KafkaError, OSError) as exc:
                    self.log.warning(
                        "recovery_retry", broken=self._broken, error=str(exc), retry_in_s=delay
                    )
                else:
                    self.log.info("recovered", broken=self._broken)
                    self._broken = None
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _restore(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        assigned: Iterable[TopicPartition],
    ) -> None:
        """Own `assigned` once their shops are back from Redis (daemon.service.restore)."""
        self._owned = set()
        self._owned = await restore_partitions(
            self.checkpoint,
            consumer,
            producer,
            assigned,
            stopping=lambda: self._stopping,
            metrics=self.metrics,
            log=self.log,
        )

    async def _on_revoked(self, consumer: AIOKafkaConsumer, revoked: list[TopicPartition]) -> None:
        """Rebalance: finish the batch in hand (the lock), settle, then let go."""
        async with self._lock:
            if self._broken is None:
                await self._settle(consumer)
            self._owned -= set(revoked)
            self.checkpoint.release({tp.partition for tp in revoked})
            self.log.info("partitions_revoked", partitions=sorted({tp.partition for tp in revoked}))

    async def _on_assigned(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        assigned: list[TopicPartition],
    ) -> None:
        """Rebalance: restore the shops of the new partitions before consuming them."""
        self._assigned_at = time.monotonic()
        async with self._lock:
            try:
                await self._restore(consumer, producer, assigned)
            except (StoreError, KafkaError, OSError) as exc:
                self._break("restore", exc)

    def _consuming(self) -> None:
        """The first records after an assignment: the daemon's own share of a hand-off
        (restore, then the first fetch) is over."""
        assert self._assigned_at is not None
        took = time.monotonic() - self._assigned_at
        self._assigned_at = None
        self.metrics.handoff_seconds.observe(took)
        self.log.info("consuming", since_assigned_s=round(took, 3))

    def _is_ready(self, consumer: AIOKafkaConsumer) -> bool:
        """Consuming, with Redis answering and every owned partition fetched recently."""
        if self._broken is not None or not self._owned or not self._redis_ok:
            return False
        return partitions_fresh(consumer, self._owned)

    def _decode(self, record: ConsumerRecord[Any, Any]) -> Decoded:
        try:
            event = decode(record.value, record.key, self.topics.inputs[record.topic])
        except DecodeError as exc:
            return Decoded(record, None, str(exc))
        return Decoded(record, event, None)

    def _reject(
        self,
        record: ConsumerRecord[Any, Any],
        reason: str,
        now: int,
        kind: str,
        *,
        logged: bool = True,
    ) -> OutputEvent:
        self._counts["rejected"] += 1
        self.metrics.rejects.labels(kind).inc()
        return dead_letter(record, reason, now, self.log if logged else None)

    async def _send(
        self, producer: AIOKafkaProducer, records: list[OutboxRecord]
    ) -> list[asyncio.Future[Any]]:
        """Hand records to the producer (batched by its linger); the delivery futures."""
        self._counts["out"] += len(records)
        return [await producer.send(r.topic, r.value, r.key) for r in records]

    # -------------------------------------------------------------------------- reload

    def _reload(self) -> list[OutputEvent]:
        """Apply a reload. New or removed shops need the owned partitions claimed and
        restored again, quarantined shops are readmitted (a reload releases them): both
        after the batch that checkpoints the reload's own outputs."""
        waiting, self._reloads = self._reloads, []
        before = set(self.engine.shops)
        self.config, outputs = apply_reload(
            self.config, self.engine, self.clock, waiting, metrics=self.metrics, log=self.log
        )
        if set(self.engine.shops) != before:
            self._restore_next = True
        elif self.checkpoint.quarantined:
            self._readmit_next = True
        return outputs


def _partitions(consumer: AIOKafkaConsumer) -> set[int]:
    """The partition numbers assigned to this instance."""
    return {tp.partition for tp in consumer.assignment()}


def _key_text(key: bytes | None) -> str | None:
    """A record key as a shop id, if it decodes."""
    if key is None:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None


def run_command(config_path: Path, log_level: str = "info") -> int:
    """`fenliu run --config PATH`: validate the configuration, then serve until stopped."""
    from daemon.service.logs import configure_logging  # noqa: PLC0415

    configure_logging(log_level)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            get_logger().error("config_invalid", problem=str(problem))
        return EXIT_CONFIG
    return asyncio.run(Service(config).run())
