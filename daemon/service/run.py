"""`fenliu run`: the asyncio shell around the routing engine (contract §1, 5, 6, 7, 8).

One loop, nothing hidden in background tasks (but a reload's file reading, below):

    poll a batch (getmany, waiting at most until the engine's next deadline)
    → feed it to the engine and fire due timers (daemon.service.intake)
    → checkpoint to Redis: changed state, offsets, outbox (daemon.service.checkpoint)
    → hand every output to the producer, at once and without linger (daemon.service.delivery)
    → every COMMIT_EVERY_S: wait for the acknowledgements, empty the outboxes, commit

The wait in `getmany` is the one timer: it never sleeps past the engine's next deadline, so
session timeouts, queue updates and `max_wait` fire on time without any input. Signal
handlers only change the service's lifecycle (daemon.service.lifecycle) or queue a reload:
SIGTERM/SIGINT stop after the batch in hand (flush, commit, exit 0), SIGHUP reloads the
configuration: the one worker thread, which reads and validates the files while the loop
routes, the reload then applied between batches (control_plane.Reloads). A reload that fails
validation changes nothing and is logged and counted.

Redis is the source of truth. No output reaches Kafka before the checkpoint that decided it;
on every partition assignment, and after any outage (`_break`, then `_recover`), the owned
shops are restored from Redis (daemon.service.restore). A rebalance listener takes the same
lock as a batch, so a revoke waits for the batch in hand. A checkpoint that finds partitions
fenced lets them go and asks for a rebalance; shops and partitions whose Redis node did not
answer are readmitted every RETRY_WAITING_S.

Around it, in daemon.service: clients (the Kafka and Redis clients, the startup check),
startup (what `run` waits for before it routes: HTTP listens first, then Kafka is awaited),
intake (records and timers into the engine), delivery (outputs to Kafka and their
acknowledgements), restore (the restore, the partitions owned, the rebalance listener),
control_plane (HTTP routes, reload), api and views (the JSON API, and the snapshot views
the loop builds for it between batches), readiness (what /readyz and the lag metric read) and
record_log (rejections and decisions as log lines).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

import daemon
from daemon.config import FenliuConfig, control_socket, load_config_or_report, stamp
from daemon.core.engine import Engine
from daemon.service.aiokafka_compat import request_rejoin, skip_leave_group
from daemon.service.api import token_guard
from daemon.service.checkpoint import Checkpoint
from daemon.service.checkpoint_types import Batch
from daemon.service.clients import (
    StartupError,
    close_within,
    kafka_client_kwargs,
    make_redis,
)
from daemon.service.clock import wall_ms
from daemon.service.control_plane import (
    Reloads,
    Report,
    install_signals,
    remove_signals,
    routes,
)
from daemon.service.delivery import Deliveries, Refusals
from daemon.service.heap import Heap, return_large_blocks
from daemon.service.http import HttpServer
from daemon.service.intake import Intake
from daemon.service.kafka import TopicMap
from daemon.service.lifecycle import SERVING, Phase
from daemon.service.logs import get_logger
from daemon.service.metrics import Metrics
from daemon.service.readiness import consumer_lag, partitions_fresh, redis_answers
from daemon.service.restore import Ownership, Rebalance
from daemon.service.startup import wait_for_kafka
from daemon.service.store import Store, StoreError
from daemon.service.views import Decisions, Views
from topics.events import OutputEvent

MAX_RECORDS = 5000  # records per poll
COMMIT_EVERY_S = 0.2  # acknowledgements are awaited and offsets committed this often
MAX_WAIT_MS = 1000  # longest poll wait, so flags are seen within a second
RELOAD_POLL_MS = 50  # poll wait while a reload's files are read: apply it soon after
POLL_GUARD_S = 2.0  # a poll that waits longer is waiting for a rebalance: stop waiting
REDIS_PING_EVERY_S = 2.0
RETRY_WAITING_S = 1.0  # shops and partitions waiting for their Redis node: retried this often
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.1, 5.0  # retrying after an outage
# Exit codes (contract §6; docs/daemon.md, "Start-up order and exit codes"): 0 a clean stop;
# 1 an unexpected failure (`service_crashed`); 2 invalid configuration or arguments
# (`config_invalid`, `startup_refused`; argparse's own code), nothing else; 3 the HTTP
# address cannot be listened on (`http_listen_failed`).
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_LISTEN = 0, 1, 2, 3


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
        self.metrics = Metrics(per_agent=config.http.per_agent_metrics)
        self.topics = TopicMap(config.kafka.topics)
        self.log = get_logger()
        self.heap = Heap(self.log)
        self.ready = False
        self.http_port: int | None = None
        self.lifecycle = SERVING  # daemon.service.lifecycle: one value, replaced by its moves
        self._redis_ok = False
        self._lock = asyncio.Lock()  # a batch, a settle, a restore or a rebalance at a time
        self._consumer: AIOKafkaConsumer | None = None
        self.views = Views(clock())  # what the JSON API reads, built by the loop between batches
        self.decisions = Decisions()  # each shop's last outputs, for the JSON API
        self.reloads = Reloads(metrics=self.metrics, log=self.log, keep=self.heap.keep)
        self.intake = Intake(
            self.engine, self.checkpoint, self.topics, self.metrics, self.log, self.decisions
        )
        self.refusals = Refusals(
            self.checkpoint, self.topics.topics.dead_letter, self.metrics, self.log,
            self.decisions.forget,
        )  # fmt: skip
        self.deliveries = Deliveries(self.checkpoint, self.refusals, self.log)
        self.ownership = Ownership(
            self.checkpoint, stopping=self._stop_flag, refusals=self.refusals,
            metrics=self.metrics, log=self.log,
        )  # fmt: skip
        self.metrics.watch(
            lambda: self.engine,
            lambda: consumer_lag(self._consumer, self.intake.positions),
            lambda: {s: a.retry for s, a in self.checkpoint.held.set_aside.items()},
            ready=lambda: self.ready,
        )

    # ------------------------------------------------------------------ control (signals)

    def request_stop(self) -> None:
        """Stop after the batch in hand (signal-safe: only changes the lifecycle)."""
        self.lifecycle = self.lifecycle.stop()

    def request_reload(self, *, dry_run: bool = False) -> asyncio.Future[Report]:
        """Reload between batches (or only work out what it would change); the future says
        how it went."""
        return self.reloads.request(dry_run=dry_run)

    # ----------------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        """Listen on HTTP, wait for Kafka, serve until asked to stop, shut down cleanly; the
        exit code (docs/daemon.md, "Start-up order and exit codes")."""
        http_config = self.config.http
        http = HttpServer(
            routes(self), http_config.host, http_config.port,
            middlewares=[token_guard(http_config.token.get_secret_value())],
            on_limit=self.metrics.http_limit,
            control_socket=control_socket(self.config.config_path),  # for `fenliu reload`
        )  # fmt: skip
        try:
            await http.start()  # first: /healthz and /readyz answer while Kafka is awaited
        except OSError as exc:
            self.log.error("http_listen_failed", listen=http_config.listen, error=str(exc))
            await close_within(self.redis.aclose(), "redis", self.log)
            return EXIT_LISTEN
        self.http_port = http.port
        if http.control_error is not None:  # `fenliu reload` then needs --url, or the listen
            self.log.warning("control_socket_failed", error=http.control_error)
        if self.install_signals:
            install_signals(self.request_stop, self.request_reload)
        kafka = self.config.kafka
        code = EXIT_OK
        try:
            security = kafka_client_kwargs(kafka)
            clients = await wait_for_kafka(
                kafka, list(self.topics.inputs), security, stopping=self._stop_flag, log=self.log
            )
            if clients is not None:
                await self._serve(*clients)
        except StartupError as exc:
            self.log.error("startup_refused", reason=str(exc))
            code = EXIT_CONFIG
        finally:
            self.ready = False
            self.reloads.close()
            if self.install_signals:
                remove_signals()
            await close_within(self.redis.aclose(), "redis", self.log)
            await close_within(http.close(), "http", self.log)
        if code == EXIT_OK:
            intake, sent = self.intake, self.deliveries.sent
            counts = {"in": intake.received, "out": sent, "rejected": intake.rejected}
            self.log.info("service_stopped", **counts)
        return code

    async def _serve(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        """Subscribe and run the loop until asked to stop; close both clients."""
        kafka = self.config.kafka
        inputs = list(self.topics.inputs)
        listener = Rebalance(
            revoked=lambda tps: self._on_revoked(consumer, tps),
            assigned=lambda tps: self._on_assigned(consumer, producer, tps),
        )
        consumer.subscribe(inputs, listener=listener)
        self._consumer = consumer
        self.log.info(
            "service_started",
            shops=len(self.engine.shops),
            topics=inputs,
            group_id=kafka.group_id,
            http_port=self.http_port,
            redis=self.config.redis.redacted_url,
            core=daemon.CORE,
            **({"core_note": daemon.CORE_NOTE} if daemon.CORE_NOTE else {}),
        )
        unwatch_gc = self.metrics.watch_gc()
        every_ms = self.config.shops.watch
        watcher = asyncio.create_task(self._watch(every_ms / 1000)) if every_ms else None
        try:
            await self._loop(consumer, producer)
        finally:
            if watcher is not None:
                watcher.cancel()
            unwatch_gc()
            gc.unfreeze()  # an embedding process (tests, `fenliu dev`) collects as before
            self.ready = False
            if not kafka.leave_group:
                skip_leave_group(consumer)
            await close_within(consumer.stop(), "consumer", self.log)
            await close_within(producer.stop(), "producer", self.log)

    async def _watch(self, every_s: float) -> None:
        """`[shops] watch`: every `every_s`, look (off the loop) whether fenliu.toml or a shop
        file changed, and if so ask for a reload. A reload that fails (a file caught half
        written, say) changes nothing and is tried again at the next change."""
        config = self.config
        look = functools.partial(stamp, config.config_path, config.shops.dir)
        seen = await asyncio.to_thread(look)
        while True:
            await asyncio.sleep(every_s)
            now = await asyncio.to_thread(look)
            if now != seen:
                seen = now
                self.log.info("shop_files_changed", reload="asked")
                self.request_reload()

    # ------------------------------------------------------------------------ the loop

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        last_ping = last_settle = last_retry = 0.0
        while not self.lifecycle.stopping:
            phase = self.lifecycle.phase
            if phase is Phase.RESTORING:
                await self._recover(consumer, producer)
                continue
            if phase is Phase.RESTORE_DUE:  # the reload's own outputs are checkpointed
                self.lifecycle = self.lifecycle.restore_started()
                continue
            if phase is Phase.READMIT_DUE or (
                self.ownership.waiting and time.monotonic() - last_retry >= RETRY_WAITING_S
            ):
                last_retry = time.monotonic()
                async with self._lock:
                    await self._readmit(consumer, producer)
            reload_outputs = self._reload() if self.reloads.busy else []
            deadline = self.engine.next_deadline()
            wait = MAX_WAIT_MS if deadline is None else deadline - self.clock()
            if self.metrics.building or self.views.building or self.reloads.applying:
                wait = 0  # a snapshot or a reload is half done: finish it before sleeping
            elif self.reloads.busy:
                wait = min(wait, RELOAD_POLL_MS)  # the files are being read off the loop
            try:  # getmany waits without limit for the assignment while the group rebalances
                batch = await asyncio.wait_for(
                    consumer.getmany(
                        timeout_ms=max(0, min(MAX_WAIT_MS, wait)), max_records=MAX_RECORDS
                    ),
                    timeout=POLL_GUARD_S,
                )
            except TimeoutError:
                batch = {}  # still rebalancing: look at the flags (SIGTERM) and timers
            self.ownership.consuming(batch)
            async with self._lock:
                await self._step(producer, batch, reload_outputs)
                if self.deliveries.pending and time.monotonic() - last_settle >= COMMIT_EVERY_S:
                    await self._settle(consumer)
                    last_settle = time.monotonic()
                    self.heap.settled()
            if self.lifecycle.in_step and self.views.due():
                self.views.build(self.engine, self.checkpoint.held, self.decisions, self.clock())
            self.metrics.refresh()  # a slice of the next /metrics snapshot, a few ms at most
            if time.monotonic() - last_ping > REDIS_PING_EVERY_S:
                last_ping = time.monotonic()
                self._redis_ok = await redis_answers(
                    self.store, was_ok=self._redis_ok, log=self.log
                )
            self.ready = self._is_ready(consumer)
        async with self._lock:
            if self.lifecycle.in_step:
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
        if not self.lifecycle.in_step:
            return
        now = self.clock()
        work = Batch()
        for event in reload_outputs:
            self.intake.add_output(work, event, None)
        owned = {tp: records for tp, records in batch.items() if tp in self.ownership.owned}
        self.intake.apply(work, owned, now)
        self.intake.fire_timers(work, now)
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
            self.ownership.lose(saved.lost)
            # Usually this instance missed a rebalance and the group has moved on; if instead
            # the other claimed late from an assignment the group has since replaced, the
            # rebalance has the rightful owner claim them again.
            if self._consumer is not None:
                request_rejoin(self._consumer)
        if saved.waiting:
            self.ownership.wait(saved.waiting)
        if saved.lost or saved.waiting:
            self.decisions.keep_only(self.checkpoint.held.partition_of)
        self.intake.log_stops()  # the guardrails' stops this checkpoint holds
        await self.deliveries.send(producer, saved.sends)

    async def _readmit(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        """Serve again what was set aside (daemon.service.restore): what waits for its Redis
        node, tried every RETRY_WAITING_S, and after a reload the quarantined shops."""
        released = self.lifecycle.phase is Phase.READMIT_DUE
        if released:
            self.lifecycle = self.lifecycle.readmitted()
        self.decisions.forget(self.checkpoint.held.set_aside)  # they start again from Redis
        try:
            await self.ownership.readmit(consumer, producer, released=released)
        except StoreError as exc:  # half way: what is owned is restored from Redis
            self._break("redis", exc)
        except (KafkaError, OSError) as exc:
            self._break("kafka", exc)

    def _stop_flag(self) -> bool:
        return self.lifecycle.stopping

    async def _settle(self, consumer: AIOKafkaConsumer) -> None:
        """Settle the deliveries (daemon.service.delivery): while acknowledgements are
        overdue the service reports not ready; a failure sends it to `_recover`."""
        failed = await self.deliveries.settle(
            consumer, stopping=self._stop_flag, overdue=self._not_ready
        )
        if failed is not None:
            self._break(*failed)

    def _not_ready(self) -> None:
        self.ready = False

    # ---------------------------------------------------------------- outages & restore

    def _break(self, component: str, exc: BaseException) -> None:
        """Stop consuming until `_recover` has brought back the checkpointed state."""
        if self.lifecycle.in_step:
            self.log.error(f"{component}_failed", error=str(exc) or type(exc).__name__)
        self.lifecycle = self.lifecycle.broke(component)
        self.ready = False
        self.deliveries.drop()

    async def _recover(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        """Retry, with capped exponential backoff, restoring the owned shops from Redis."""
        delay = BACKOFF_FIRST_S
        while not self.lifecycle.stopping:
            async with self._lock:
                try:
                    await self.ownership.restore(consumer, producer, consumer.assignment())
                except (StoreError, KafkaError, OSError) as exc:
                    self.log.warning(
                        "recovery_retry",
                        broken=self.lifecycle.cause,
                        error=str(exc),
                        retry_in_s=delay,
                    )
                else:
                    self.log.info("recovered", broken=self.lifecycle.cause)
                    self.decisions.forget()  # every shop starts again from Redis
                    self.lifecycle = self.lifecycle.recovered()
                    self.heap.reset("restore")
                    return
            self.metrics.refresh()  # the failures and readiness stay visible meanwhile
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _on_revoked(self, consumer: AIOKafkaConsumer, revoked: list[TopicPartition]) -> None:
        """Rebalance: finish the batch in hand (the lock), settle, then let go."""
        async with self._lock:
            if self.lifecycle.in_step:
                await self._settle(consumer)
            self.ownership.revoke(revoked)
            self.decisions.keep_only(self.checkpoint.held.partition_of)

    async def _on_assigned(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        assigned: list[TopicPartition],
    ) -> None:
        """Rebalance: restore the shops of the new partitions before consuming them."""
        self.ownership.assigned()
        async with self._lock:
            try:
                await self.ownership.restore(consumer, producer, assigned)
            except (StoreError, KafkaError, OSError) as exc:
                self._break("restore", exc)
            else:
                self.decisions.forget()  # every shop starts again from Redis
                self.heap.reset("restore")

    def _is_ready(self, consumer: AIOKafkaConsumer) -> bool:
        """Consuming, with Redis answering and every owned partition fetched recently."""
        owned = self.ownership.owned
        if not self.lifecycle.in_step or not owned or not self._redis_ok:
            return False
        return partitions_fresh(consumer, owned)

    # -------------------------------------------------------------------------- reload

    def _reload(self) -> list[OutputEvent]:
        """Move a reload on (control_plane.Reloads: the files are read off the loop, then
        applied a slice at a time). Once applied: new or removed shops need the owned
        partitions claimed and restored again, quarantined shops are readmitted (a reload
        releases them), both after the batch that checkpoints the reload's own outputs. A
        refused reload changes nothing. The shops a reload rebuilt leave cyclic garbage in
        the frozen heap: the next periodic reset collects it (a reset here would stop the
        loop for ~0.2 s at 3,000 shops; daemon.service.heap)."""
        applied = self.reloads.step(self.config, self.engine, self.clock())
        if applied.config is not None:
            self.config = applied.config
            if applied.reshaped:
                self.lifecycle = self.lifecycle.restore_due()  # and the restore resets the heap
            elif self.checkpoint.held.quarantined:
                self.lifecycle = self.lifecycle.readmit_due()
        return applied.outputs


def _stop_before_start(signum: int, frame: object) -> None:
    """SIGTERM or SIGINT while the configuration loads or HTTP starts: nothing is running
    yet that could have state to save, so a stop is an exit 0 at once."""
    raise SystemExit(EXIT_OK)


def run_command(config_path: Path, log_level: str = "info") -> int:
    """`fenliu run --config PATH`: validate the configuration, then serve until stopped."""
    from daemon.service.logs import configure_logging  # noqa: PLC0415

    configure_logging(log_level)
    for sig in (signal.SIGTERM, signal.SIGINT):  # until the service's own handlers take over
        signal.signal(sig, _stop_before_start)
    log = get_logger()
    config = load_config_or_report(
        config_path, report=lambda problem: log.error("config_invalid", problem=problem)
    )
    if config is None:
        return EXIT_CONFIG
    return_large_blocks()  # a process-wide allocator setting: the daemon's own process only
    try:
        return asyncio.run(Service(config).run())
    except Exception as exc:  # noqa: BLE001 - the outermost supervisor: named, not a traceback
        error = f"{type(exc).__name__}: {exc}"
        get_logger().critical("service_crashed", error=error, exc_info=True)
        return EXIT_FAILED
