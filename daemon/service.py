"""`fenliu run`: the asyncio shell around the routing engine (CONTRACT 1, 5, 6, 8).

One loop, nothing hidden in background tasks:

    poll a batch (getmany, waiting at most until the engine's next deadline)
    → decode → feed the engine partition by partition, the three topics merged by `ts`
    → fire due timers → hand every output to the producer (batched by its linger)
    → every COMMIT_EVERY_S: wait for the acknowledgements, then commit the offsets

The wait in `getmany` is the one timer: it never sleeps past the engine's next deadline, so
session timeouts, queue updates and `max_wait` fire on time without any input. Signal
handlers only set flags: SIGTERM/SIGINT stop after the batch in hand (flush, commit, exit 0),
SIGHUP reloads the configuration between batches. Offsets are committed only after every
output decided before them is acknowledged, so delivery is at-least-once. A reload that
fails validation changes nothing and is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition
from redis.exceptions import RedisError

from daemon.config import ConfigError, FenliuConfig, load_config
from daemon.core.engine import Engine, EventRejected
from daemon.http import HttpServer, Routes
from daemon.kafka import CoPartitionAssignor, Decoded, TopicMap, ordered_batch
from daemon.logs import get_logger
from daemon.metrics import Metrics
from daemon.topics_admin import kafka_client_kwargs, partition_counts
from topics.codec import DecodeError, decode, encode, rejected_for, type_name
from topics.events import Assignment, OutputEvent, QueueUpdate, SessionClosed

MAX_RECORDS = 5000  # records per poll
FETCH_MAX_WAIT_MS = 10  # some brokers (Tansu) hold a fetch this long even when data is there
SESSION_TIMEOUT_MS = 6000  # group membership: a dead instance's shops move after this
COMMIT_EVERY_S = 0.2  # acknowledgements are awaited and offsets committed this often
MAX_WAIT_MS = 1000  # longest poll wait, so flags are seen within a second
REDIS_PING_EVERY_S = 2.0
CLOSE_TIMEOUT_S = 4.0
EXIT_OK, EXIT_CONFIG = 0, 2


def wall_ms() -> int:
    """The daemon's clock: epoch milliseconds."""
    return time.time_ns() // 1_000_000


class StartupError(RuntimeError):
    """The service cannot start; the message says why and what to do."""


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
        self.engine = Engine(config.shop_configs)
        self.metrics = Metrics()
        self.topics = TopicMap(config.kafka.topics)
        self.log = get_logger()
        self.ready = False
        self.http_port: int | None = None
        self._stopping = False
        self._reloads: list[asyncio.Future[str]] = []
        self._redis_ok = False
        self._positions: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._counts = {"in": 0, "out": 0, "rejected": 0}
        self.metrics.watch(lambda: self.engine, self._lag)

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
            await self._check_partitions(inputs, security)
        except StartupError as exc:
            self.log.error("startup_refused", reason=str(exc))
            return EXIT_CONFIG
        consumer = AIOKafkaConsumer(
            *inputs,
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=kafka.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(CoPartitionAssignor,),
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=SESSION_TIMEOUT_MS // 3,
            **security,
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            linger_ms=5,
            acks="all",
            enable_idempotence=False,
            **security,
        )
        store = aioredis.Redis.from_url(
            self.config.redis.url, socket_timeout=1, socket_connect_timeout=1
        )
        http = HttpServer(self._routes(), self.config.http.host, self.config.http.port)
        await http.start()
        self.http_port = http.port
        await producer.start()
        await consumer.start()
        self._consumer = consumer
        self._install_signals()
        self.log.info(
            "service_started",
            shops=sorted(self.engine.shops),
            topics=inputs,
            group_id=kafka.group_id,
            http_port=self.http_port,
            redis=self.config.redis.redacted_url,
        )
        try:
            await self._loop(consumer, producer, store)
        finally:
            self.ready = False
            self._remove_signals()
            await self._close(consumer.stop(), "consumer")
            await self._close(producer.stop(), "producer")
            await self._close(store.aclose(), "redis")
            await self._close(http.close(), "http")
            self.log.info("service_stopped", **self._counts)
        return EXIT_OK

    async def _check_partitions(self, inputs: list[str], security: dict[str, Any]) -> None:
        try:
            counts = await partition_counts(self.config.kafka.bootstrap_servers, inputs, security)
        except Exception as exc:
            raise StartupError(f"cannot reach Kafka to inspect the input topics: {exc}") from exc
        missing = [name for name in inputs if not counts.get(name)]
        if missing:
            raise StartupError(
                f"input topics {missing} do not exist; create them with "
                "`fenliu topics create --config FILE`"
            )
        if len({counts[name] for name in inputs}) > 1:
            raise StartupError(
                f"input topics must have the same partition count (a shop's events must share "
                f"a partition number on every topic); found {counts}"
            )

    async def _close(self, closing: Any, what: str) -> None:
        try:
            await asyncio.wait_for(closing, timeout=CLOSE_TIMEOUT_S)
        except (TimeoutError, OSError, RedisError) as exc:
            self.log.warning("close_failed", component=what, error=str(exc))

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

    async def _loop(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, store: aioredis.Redis
    ) -> None:
        last_ping = last_commit = 0.0
        unacked: list[asyncio.Future[Any]] = []
        consumed = False
        while not self._stopping:
            if self._reloads:
                unacked += await self._send(producer, self._reload())
            deadline = self.engine.next_deadline()
            wait = MAX_WAIT_MS if deadline is None else deadline - self.clock()
            batch = await consumer.getmany(
                timeout_ms=max(0, min(MAX_WAIT_MS, wait)), max_records=MAX_RECORDS
            )
            now = self.clock()
            outputs = self._apply(batch, now)
            outputs.extend(self.engine.on_timer(now))
            unacked += await self._send(producer, outputs)
            consumed = consumed or bool(batch)
            if consumed and time.monotonic() - last_commit >= COMMIT_EVERY_S:
                await self._commit(consumer, unacked)
                consumed, last_commit = False, time.monotonic()
            if time.monotonic() - last_ping > REDIS_PING_EVERY_S:
                last_ping = time.monotonic()
                self._redis_ok = await self._ping(store)
            self.ready = bool(consumer.assignment()) and self._redis_ok
        await self._commit(consumer, unacked)

    async def _commit(self, consumer: AIOKafkaConsumer, unacked: list[asyncio.Future[Any]]) -> None:
        """Wait until Kafka acknowledged every output so far, then commit what was consumed.

        Offsets are committed only after the outputs they led to are stored, so a crash
        repeats work (same output ids) rather than losing it.
        """
        await asyncio.gather(*unacked)
        unacked.clear()
        await consumer.commit()

    def _apply(
        self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]], now: int
    ) -> list[OutputEvent]:
        out: list[OutputEvent] = []
        engine, observe = self.engine, self.metrics.decision_seconds.observe
        for _, items in ordered_batch(batch, list(self.topics.inputs), self._decode):
            for item in items:
                record = item.record
                self._positions[TopicPartition(record.topic, record.partition)] = record.offset + 1
                self._counts["in"] += 1
                if item.event is None:
                    assert item.error is not None
                    out.append(self._reject(record, item.error, now, "invalid"))
                    continue
                self.metrics.events_in.labels(record.topic, type_name(item.event)).inc()
                started = time.perf_counter()
                try:
                    out.extend(engine.handle(item.event, now))
                except EventRejected as rejected:
                    out.extend(rejected.outputs)
                    kind = "unknown_shop" if item.event.shop_id not in engine.shops else "refused"
                    out.append(self._reject(record, rejected.reason, now, kind))
                observe(time.perf_counter() - started)
        return out

    def _decode(self, record: ConsumerRecord[Any, Any]) -> Decoded:
        try:
            event = decode(record.value, record.key, self.topics.inputs[record.topic])
        except DecodeError as exc:
            return Decoded(record, None, str(exc))
        return Decoded(record, event, None)

    def _reject(
        self, record: ConsumerRecord[Any, Any], reason: str, now: int, kind: str
    ) -> OutputEvent:
        self._counts["rejected"] += 1
        self.metrics.rejects.labels(kind).inc()
        rejected = rejected_for(
            reason,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            value=record.value,
            key=record.key,
            now_ms=now,
        )
        self.log.warning(
            "event_rejected",
            reason=reason,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            shop_id=rejected.shop_id,
        )
        return rejected

    async def _send(
        self, producer: AIOKafkaProducer, outputs: list[OutputEvent]
    ) -> list[asyncio.Future[Any]]:
        """Hand every output to the producer (batched by its linger); the delivery futures."""
        if not outputs:
            return []
        self.metrics.decided(outputs)
        self._counts["out"] += len(outputs)
        pending = []
        for event in outputs:
            _log_decision(self.log, event)
            key = event.shop_id.encode() if event.shop_id is not None else None
            pending.append(await producer.send(self.topics.output_topic(event), encode(event), key))
        return pending

    async def _ping(self, store: aioredis.Redis) -> bool:
        try:
            return bool(await store.ping())
        except (RedisError, OSError) as exc:
            if self._redis_ok:
                self.log.warning("redis_unreachable", error=str(exc))
            return False

    def _lag(self) -> dict[str, int]:
        consumer = self._consumer
        if consumer is None:
            return {}
        lag: dict[str, int] = {}
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                lag[f"{tp.topic}/{tp.partition}"] = max(0, high - self._positions.get(tp, 0))
        return lag

    # -------------------------------------------------------------------------- reload

    def _reload(self) -> list[OutputEvent]:
        waiting, self._reloads = self._reloads, []
        try:
            new = load_config(self.config.config_path)
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
            self.metrics.reloads.labels("failed").inc()
            self.log.error("reload_failed", problems=problems)
            _settle(waiting, "reload refused; nothing changed:\n" + "\n".join(problems), ok=False)
            return []
        outputs = self.engine.reconfigure(new.shop_configs, self.clock())
        restart = [
            k for k in ("kafka", "redis", "http") if getattr(new, k) != getattr(self.config, k)
        ]
        self.config = self.config.model_copy(update={"shop_configs": new.shop_configs})
        self.metrics.reloads.labels("ok").inc()
        self.log.info("reload_ok", shops=sorted(new.shop_configs), needs_restart=restart)
        note = f" ({', '.join(restart)} changes need a restart)" if restart else ""
        _settle(waiting, f"reloaded {len(new.shop_configs)} shop(s){note}", ok=True)
        return outputs

    # --------------------------------------------------------------------------- HTTP

    def _routes(self) -> Routes:
        async def metrics() -> tuple[int, str, bytes]:
            return 200, "text/plain; version=0.0.4", self.metrics.render()

        async def healthz() -> tuple[int, str, bytes]:
            return 200, "text/plain", b"ok\n"

        async def readyz() -> tuple[int, str, bytes]:
            if self.ready:
                return 200, "text/plain", b"ready\n"
            return 503, "text/plain", b"not ready\n"

        async def reload() -> tuple[int, str, bytes]:
            try:
                text = await asyncio.wait_for(self.request_reload(), timeout=10)
            except ReloadRefused as exc:
                return 422, "text/plain", f"{exc}\n".encode()
            except TimeoutError:
                return 503, "text/plain", b"reload not applied within 10 s\n"
            return 200, "text/plain", f"{text}\n".encode()

        return Routes(metrics=metrics, healthz=healthz, readyz=readyz, reload=reload)


class ReloadRefused(ValueError):
    """A reload whose configuration did not validate."""


def _settle(futures: list[asyncio.Future[str]], text: str, *, ok: bool) -> None:
    for future in futures:
        if not future.done():
            if ok:
                future.set_result(text)
            else:
                future.set_exception(ReloadRefused(text))
        with contextlib.suppress(asyncio.CancelledError, ReloadRefused):
            if future.done():
                future.exception()  # mark retrieved: a SIGHUP reload has no listener


def _log_decision(log: Any, event: OutputEvent) -> None:
    if isinstance(event, Assignment):
        log.debug(
            "assignment", shop_id=event.shop_id, buyer_id=event.buyer_id, agent_id=event.agent_id,
            reason=event.reason.value, group=event.group,
        )  # fmt: skip
    elif isinstance(event, SessionClosed):
        log.debug(
            "session_closed", shop_id=event.shop_id, buyer_id=event.buyer_id,
            agent_id=event.agent_id, reason=event.reason.value,
        )  # fmt: skip
    elif isinstance(event, QueueUpdate):
        log.debug(
            "queue_update", shop_id=event.shop_id, buyer_id=event.buyer_id,
            status=event.status.value, position=event.position,
        )  # fmt: skip


def run_command(config_path: Path, log_level: str = "info") -> int:
    """`fenliu run --config PATH`: validate the configuration, then serve until stopped."""
    from daemon.logs import configure_logging  # noqa: PLC0415

    configure_logging(log_level)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            get_logger().error("config_invalid", problem=str(problem))
        return EXIT_CONFIG
    return asyncio.run(Service(config).run())
