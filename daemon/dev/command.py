"""`fenliu dev`: a complete local stack with no setup (contract §8), and a live view of it.

    Tansu broker + redis-server   child processes on free loopback ports (daemon.dev.stack)
    the six topics                4 partitions each (daemon.tools.topics_admin)
    the daemon                    `Service` as an asyncio task of this process, logging to
                                  daemon.log in the run's folder, not to the terminal
    simulated buyers and agents   daemon.dev.traffic, produced to the input topics
    the view                      `Monitor`, fed by the output topics and the daemon's /metrics
    the console                   the daemon's own page (GET /, daemon/console), whose address
                                  is the first line printed

Everything lives in one temporary folder (fenliu.toml, shops/, and the logs), printed at
the start and kept after the run. On a terminal the view is live until Ctrl-C; with
`--duration S`, or when stdout is not a terminal, a progress line is printed every few
seconds instead. Either way a summary ends the run.

Stopping (Ctrl-C, SIGTERM or the end of `--duration`): the traffic stops, the producer is
flushed, the daemon is asked to stop and awaited, the output consumer catches up and
closes, then redis-server and the broker are stopped. Exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.live import Live

from daemon.config import ConfigError, FenliuConfig, load_config, load_shop_file
from daemon.core.config import ShopConfig
from daemon.dev.demo import DEFAULT_SHOP
from daemon.dev.stack import (
    HOST,
    Broker,
    DevStackError,
    RedisServer,
    free_port,
    write_daemon_config,
)
from daemon.dev.traffic import DEFAULT_RATE, DEFAULT_SEED, Traffic, TrafficSettings, topic_kind
from daemon.dev.view import Monitor, decode_output, http_get
from daemon.service.clock import wall_ms
from daemon.service.logs import configure_logging
from daemon.service.run import Service
from daemon.tools.topics_admin import TopicsAdminError, create_topics
from topics.codec import TopicKind, encode

READY_TIMEOUT_S = 60.0  # the daemon's consumer joins its group (Tansu: about 5 s)
STOP_TIMEOUT_S = 15.0
REFRESH_S = 0.5
PROGRESS_EVERY_S = 5.0
DRAIN_S = 3.0  # once the daemon stopped, read its last outputs for at most this long
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


@dataclass(frozen=True, slots=True)
class DevOptions:
    """What `fenliu dev` was asked for."""

    shop_path: Path = DEFAULT_SHOP
    duration_s: float | None = None
    rate: float = DEFAULT_RATE
    seed: int = DEFAULT_SEED


class DevError(RuntimeError):
    """The stack could not start or stop; the message says why."""


def dev_command(options: DevOptions, console: Console | None = None) -> int:
    """`fenliu dev`: start everything, show it, stop everything; the exit code."""
    out = console or Console(highlight=False)
    try:
        shop = load_shop_file(options.shop_path)
    except ConfigError as exc:
        out.print(
            f"fenliu dev: cannot load the shop file:\n{exc}",
            style="red",
            markup=False,
            soft_wrap=True,
        )
        return EXIT_CONFIG
    http_port = free_port()  # chosen first: the console's address is the first line printed
    out.print(
        f"console http://{HOST}:{http_port}/  (班长控制台: queues, agents, decisions, explain;"
        " live once the daemon is ready)",
        style="bold",
        markup=False,
        soft_wrap=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="fenliu-dev-"))
    logging.basicConfig(filename=folder / "clients.log", level=logging.INFO)  # aiokafka's logs
    broker, redis = Broker(log_dir=folder), RedisServer(log_dir=folder)
    out.print(
        f"Fenliu dev: shop {shop.id!r} from {options.shop_path}",
        markup=False,
        soft_wrap=True,
    )
    try:
        with _step(out, "starting a Kafka-protocol broker (Tansu) and redis-server"):
            broker.start()
            redis.start()
        out.print(f"broker  {broker.bootstrap}  pid {broker.pid}", markup=False, soft_wrap=True)
        out.print(f"redis   {redis.url}  pid {redis.pid}", markup=False, soft_wrap=True)
        out.print(
            f"files   {folder}  (fenliu.toml, shops/, daemon.log)", markup=False, soft_wrap=True
        )
        config_path = write_daemon_config(
            folder,
            bootstrap=broker.bootstrap,
            redis_url=redis.url,
            shops={shop.id: options.shop_path.read_text()},
            http_port=http_port,
            per_agent_metrics=True,  # the live view shows each agent's load
        )
        with (folder / "daemon.log").open("ab") as log:
            return asyncio.run(_main(options, shop, config_path, log, out))
    except (DevError, DevStackError, TopicsAdminError) as exc:
        out.print(f"fenliu dev: {exc}", style="red", markup=False, soft_wrap=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK  # interrupted while starting: nothing to summarise
    finally:
        running = [f"{p.name} (pid {p.pid})" for p in (broker, redis) if p.pid is not None]
        redis.stop()
        broker.stop()
        stopped = f"stopped {' and '.join(running)}; " if running else ""
        out.print(f"{stopped}files kept in {folder}", style="dim", markup=False, soft_wrap=True)


@contextlib.contextmanager
def _step(out: Console, what: str) -> Iterator[None]:
    """A spinner on a terminal, a plain line elsewhere."""
    if not out.is_terminal:
        out.print(f"{what}…", markup=False, soft_wrap=True)
        yield
        return
    with out.status(f"{what}…"):
        yield


async def _main(
    options: DevOptions, shop: ShopConfig, config_path: Path, log: BinaryIO, out: Console
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        config = load_config(config_path)
        await create_topics(config.kafka.bootstrap_servers, config.kafka.topics, partitions=4)
        configure_logging("info", stream=log)
        return await _serve(options, shop, config, stop, out)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _serve(
    options: DevOptions, shop: ShopConfig, config: FenliuConfig, stop: asyncio.Event, out: Console
) -> int:
    service = Service(config, install_signals=False)
    daemon = asyncio.create_task(service.run(), name="fenliu-daemon")
    try:
        async with _clients(config) as (producer, consumer):
            with _step(out, "starting the daemon (its consumer joins the group: a few seconds)"):
                await _wait_ready(service, daemon, stop)
            if stop.is_set():
                return EXIT_OK
            run = DevRun(options, shop, config, service, producer, consumer, out)
            await run.play(stop, daemon)
            run.print_summary()
    finally:
        await _stop_daemon(service, daemon)
    if daemon.cancelled():
        raise DevError(f"the daemon did not stop within {STOP_TIMEOUT_S:g} s")
    return daemon.result()


@contextlib.asynccontextmanager
async def _clients(
    config: FenliuConfig,
) -> AsyncIterator[tuple[AIOKafkaProducer, AIOKafkaConsumer]]:
    """The traffic's producer and the view's consumer of the three output topics."""
    topics, bootstrap = config.kafka.topics, config.kafka.bootstrap_servers
    consumer = AIOKafkaConsumer(
        topics.assignments,
        topics.queue_updates,
        topics.dead_letter,
        bootstrap_servers=bootstrap,
        group_id=None,  # no group: every partition, and no join to wait for
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    try:
        await producer.start()
        try:
            yield producer, consumer
        finally:
            await producer.stop()
    finally:
        await consumer.stop()


async def _wait_ready(service: Service, daemon: asyncio.Task[int], stop: asyncio.Event) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not service.ready and not stop.is_set():
        if daemon.done():
            raise DevError(f"the daemon stopped while starting (exit code {daemon.result()})")
        if time.monotonic() > deadline:
            raise DevError(f"the daemon was not ready within {READY_TIMEOUT_S:g} s")
        await asyncio.sleep(0.1)


async def _stop_daemon(service: Service, daemon: asyncio.Task[int]) -> None:
    """Ask the daemon to stop and wait for it (cancelled if it does not stop in time)."""
    service.request_stop()
    if daemon.done():
        return
    try:
        await asyncio.wait_for(asyncio.shield(daemon), STOP_TIMEOUT_S)
    except TimeoutError:
        daemon.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await daemon
        raise DevError(f"the daemon did not stop within {STOP_TIMEOUT_S:g} s") from None


class DevRun:
    """The running stack: traffic in, decisions out, shown as they happen."""

    def __init__(
        self,
        options: DevOptions,
        shop: ShopConfig,
        config: FenliuConfig,
        service: Service,
        producer: AIOKafkaProducer,
        consumer: AIOKafkaConsumer,
        console: Console,
    ) -> None:
        self.options, self.service, self.console = options, service, console
        self.producer, self.consumer = producer, consumer
        settings = TrafficSettings(
            rate=options.rate, seed=options.seed, duration_s=options.duration_s
        )
        self.started = time.monotonic()
        self.traffic_s: float | None = None  # how long the traffic ran, once it stopped
        self.traffic = Traffic(shop, settings, start_ms=wall_ms())
        self.monitor = Monitor(shop, self.traffic, f"127.0.0.1:{service.http_port}")
        self.live = console.is_terminal and options.duration_s is None
        self._key = shop.id.encode()
        topics = config.kafka.topics
        self._topics = {
            TopicKind.INQUIRIES: topics.inquiries,
            TopicKind.MESSAGES: topics.messages,
            TopicKind.AGENT_STATUS: topics.agent_status,
        }

    async def play(self, stop: asyncio.Event, daemon: asyncio.Task[int]) -> None:
        """Run until `stop` or the end of the traffic, then wind down in order."""
        finished = asyncio.Event()  # the daemon stopped: the readers end once caught up
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._read_outputs(finished))
            tasks.create_task(self._scrape(finished))
            tasks.create_task(self._show(finished))
            await self._send_traffic(stop)
            self.traffic_s = self.elapsed()
            self.monitor.stopping = True
            await self.producer.flush()
            with contextlib.suppress(DevError):  # reported by the caller: it was cancelled
                await _stop_daemon(self.service, daemon)
            finished.set()

    def elapsed(self) -> float:
        """Seconds since the traffic started."""
        return time.monotonic() - self.started

    async def _send_traffic(self, stop: asyncio.Event) -> None:
        end = self.traffic.end_ms
        while not stop.is_set() and (end is None or wall_ms() < end):
            for event in self.traffic.due(wall_ms()):
                topic = self._topics[topic_kind(event)]
                await self.producer.send(topic, encode(event), key=self._key)
            due = self.traffic.next_due()
            wait = 0.2 if due is None else min(0.2, max(0.0, (due - wall_ms()) / 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def _read_outputs(self, finished: asyncio.Event) -> None:
        drain_until: float | None = None
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            now = wall_ms()
            for records in batch.values():
                for record in records:
                    event = decode_output(record.value)
                    if event is not None:
                        self.traffic.observe(event, now)
                        self.monitor.observe(event)
            if finished.is_set():
                drain_until = drain_until or time.monotonic() + DRAIN_S
                if not batch or time.monotonic() > drain_until:
                    return

    async def _scrape(self, finished: asyncio.Event) -> None:
        while not finished.is_set():
            text = await http_get(self.monitor.http, "/metrics")
            if text is not None:
                self.monitor.scrape(text)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), REFRESH_S)

    async def _show(self, finished: asyncio.Event) -> None:
        if not self.live:
            next_line = PROGRESS_EVERY_S
            while not self.monitor.stopping:
                await asyncio.sleep(REFRESH_S)
                if self.elapsed() >= next_line:
                    next_line += PROGRESS_EVERY_S
                    self.console.print(
                        self.monitor.progress(self.elapsed()), markup=False, soft_wrap=True
                    )
            return
        with Live(console=self.console, auto_refresh=False, vertical_overflow="crop") as live:
            while not finished.is_set():
                live.update(self.monitor.render(self.elapsed(), self.console), refresh=True)
                await asyncio.sleep(REFRESH_S)
            live.update(self.monitor.render(self.elapsed(), self.console), refresh=True)

    def print_summary(self) -> None:
        """The run in a few lines."""
        self.console.print()
        ran = self.traffic_s if self.traffic_s is not None else self.elapsed()
        for line in self.monitor.summary(ran, self.options.rate, self.options.seed):
            self.console.print(line, markup=False, soft_wrap=True)
