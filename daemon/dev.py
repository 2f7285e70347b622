"""`fenliu dev`: a complete local stack with no setup (CONTRACT 8), and a live view of it.

    Tansu broker + redis-server   child processes on free loopback ports (daemon.devstack)
    the six topics                4 partitions each (daemon.topics_admin)
    the daemon                    `Service` as an asyncio task of this process, logging to
                                  daemon.log in the run's folder, not to the terminal
    simulated buyers and agents   daemon.traffic, produced to the input topics
    the view                      `Monitor`, fed by the output topics and the daemon's /metrics

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
import shutil
import signal
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from rich import box
from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from daemon.config import ConfigError, FenliuConfig, load_config, load_shop_file
from daemon.core.config import ShopConfig
from daemon.demo import DEFAULT_SHOP
from daemon.devstack import Broker, DevStackError, RedisServer, free_port
from daemon.logs import configure_logging
from daemon.service import Service, wall_ms
from daemon.topics_admin import TopicsAdminError, create_topics
from daemon.traffic import DEFAULT_RATE, DEFAULT_SEED, Traffic, TrafficSettings, topic_kind
from topics.codec import TopicKind, encode
from topics.events import (
    AgentStatus,
    Assignment,
    AssignReason,
    CloseReason,
    Mode,
    OutputEvent,
    QueueStatus,
    QueueUpdate,
    Rejected,
    SessionClosed,
)

READY_TIMEOUT_S = 60.0  # the daemon's consumer joins its group (Tansu: about 5 s)
STOP_TIMEOUT_S = 15.0
REFRESH_S = 0.5
PROGRESS_EVERY_S = 5.0
DRAIN_S = 3.0  # once the daemon stopped, read its last outputs for at most this long
RATE_WINDOW_MS = 10_000
HTTP_TIMEOUT_S = 1.0
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
    folder = Path(tempfile.mkdtemp(prefix="fenliu-dev-"))
    logging.basicConfig(filename=folder / "clients.log", level=logging.INFO)  # aiokafka's logs
    broker, redis = Broker(log_dir=folder), RedisServer(log_dir=folder)
    out.print(
        f"Fenliu dev: shop {shop.id!r} from {options.shop_path}",
        style="bold",
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
        config_path = write_config(folder, options.shop_path, shop, broker.bootstrap, redis.url)
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


def write_config(
    folder: Path, shop_path: Path, shop: ShopConfig, bootstrap: str, redis_url: str
) -> Path:
    """fenliu.toml and shops/<id>.toml in `folder`, pointing at this stack; the toml's path."""
    (folder / "shops").mkdir(exist_ok=True)
    shutil.copyfile(shop_path, folder / "shops" / f"{shop.id}.toml")
    path = folder / "fenliu.toml"
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ngroup_id = "fenliu-dev"\n\n'
        f'[redis]\nurl = "{redis_url}"\n\n'
        f'[http]\nlisten = "127.0.0.1:{free_port()}"\n\n'
        '[shops]\ndir = "shops"\n'
    )
    return path


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


async def http_get(address: str, path: str) -> str | None:
    """The body of GET http://address/path, or None when nobody answers in time."""
    host, port = address.rsplit(":", 1)
    try:
        async with asyncio.timeout(HTTP_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
            answer = await reader.read()
            writer.close()
    except (OSError, TimeoutError):
        return None
    head, _, body = answer.partition(b"\r\n\r\n")
    return body.decode() if head.startswith(b"HTTP/1.1 200") else None


# ------------------------------------------------------------------------------- the view


def decode_output(value: bytes | None) -> OutputEvent | None:
    """An output record as its event; None for anything unreadable (the view only shows)."""
    try:
        o: dict[str, Any] = orjson.loads(value or b"")
        head = (o["id"], o["shop_id"], o["ts"])
        match o["type"]:
            case "assignment":
                mode = Mode(o["mode"]) if o["mode"] else None
                return Assignment(
                    *head, o["inquiry_id"], o["buyer_id"], o["agent_id"], o["group"],
                    AssignReason(o["reason"]), mode, o["waited_ms"],
                )  # fmt: skip
            case "session_closed":
                reason = CloseReason(o["reason"])
                return SessionClosed(*head, o["buyer_id"], o["agent_id"], reason)
            case "queue_update":
                return QueueUpdate(
                    *head, o["inquiry_id"], o["buyer_id"], o["group"], QueueStatus(o["status"]),
                    o.get("position"), o.get("estimated_wait_s"),
                )  # fmt: skip
            case "rejected":
                where = (o["source_topic"], o["partition"], o["offset"])
                encoding = o.get("raw_encoding", "utf-8")
                return Rejected(*head, o["error"], *where, o["raw"], encoding)
    except (ValueError, KeyError, TypeError):
        pass
    return None


_SCRAPED = (
    "fenliu_queue_length",
    "fenliu_queue_oldest_wait_seconds",
    "fenliu_agent_open_sessions",
    "fenliu_agent_pending",
)
_STATUS_STYLE = {
    AgentStatus.ONLINE: ("●", "green"),
    AgentStatus.SUSPENDED: ("◐", "yellow"),
    AgentStatus.OFFLINE: ("○", "red"),
}


@dataclass(frozen=True, slots=True)
class _Line:
    """One decision in the view's log."""

    ts: int
    what: str
    buyer: str
    agent: str
    detail: str
    style: str


class Monitor:
    """What the view shows: decisions from the output topics, state from /metrics."""

    def __init__(self, shop: ShopConfig, traffic: Traffic, http: str) -> None:
        self.shop, self.traffic, self.http = shop, traffic, http
        self.assigned: Counter[str] = Counter()
        self.queue: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self.rejected = 0
        self.recent: deque[tuple[int, str]] = deque()  # (ts, reason) of recent assignments
        self.lines: deque[_Line] = deque(maxlen=10)
        self.queues: dict[str, tuple[int, float]] = {}  # group -> (length, oldest wait s)
        self.agents: dict[str, tuple[int, int]] = {}  # agent -> (open sessions, pending)
        self.stopping = False

    def observe(self, event: OutputEvent) -> None:
        """Count and log one decision."""
        if isinstance(event, Assignment):
            self.assigned[event.reason.value] += 1
            self.recent.append((event.ts, event.reason.value))
            where = "/".join(x for x in (event.group, event.mode and event.mode.value) if x)
            waited = f", waited {event.waited_ms / 1000:.0f}s" if event.waited_ms else ""
            what, buyer, agent = event.reason.value, event.buyer_id, event.agent_id
            self._log(event.ts, what, buyer, agent, where + waited, "green")
        elif isinstance(event, SessionClosed):
            self.closed[event.reason.value] += 1
            self._log(event.ts, "closed", event.buyer_id, event.agent_id, event.reason.value, "dim")
        elif isinstance(event, QueueUpdate):
            status = event.status
            self.queue[status.value] += 1
            if status not in (QueueStatus.WAITING, QueueStatus.DEQUEUED):  # the noisy ones
                place = f"#{event.position}, ~{event.estimated_wait_s}s" if event.position else ""
                group = event.group or "unmatched pool"
                self._log(event.ts, status.value, event.buyer_id, "", f"{group} {place}", "yellow")
        else:
            self.rejected += 1
            self._log(event.ts, "rejected", "", "", event.error, "red")

    def _log(self, ts: int, what: str, buyer: str, agent: str, detail: str, style: str) -> None:
        self.lines.append(_Line(ts, what, buyer, agent, detail, style))

    def scrape(self, text: str) -> None:
        """Queue lengths and agent loads from the daemon's /metrics."""
        found: dict[str, dict[str, float]] = {name: {} for name in _SCRAPED}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name in found and labels.get("shop") == self.shop.id:
                    key = labels.get("group") or labels.get("agent") or ""
                    found[sample.name][key] = sample.value
        lengths, oldest, loads, pending = (found[name] for name in _SCRAPED)
        self.queues = {g: (int(n), oldest.get(g, 0.0)) for g, n in lengths.items()}
        self.agents = {a: (int(n), int(pending.get(a, 0))) for a, n in loads.items()}

    # ----------------------------------------------------------------------- rendering

    def render(self, elapsed: float, console: Console) -> RenderableType:
        """The whole live view."""
        now = wall_ms()
        while self.recent and self.recent[0][0] < now - RATE_WINDOW_MS:
            self.recent.popleft()
        state = "stopping…" if self.stopping else "Ctrl-C stops"
        head = Text.assemble(
            ("Fenliu dev", "bold"),
            f" · shop {self.shop.id} · {elapsed:.0f}s · {self.traffic.settings.rate:g} buyers/s"
            f" · metrics http://{self.http}/metrics · {state}\n",
            (self._traffic_line(), "dim"),
        )
        top = Table.grid(padding=(0, 4))
        top.add_row(self._queue_table(), self._rate_table())
        above = Group(head, top, self._agent_cells())
        used = len(console.render_lines(above, console.options, pad=False))
        rows = max(3, min(len(self.lines), console.height - used - 5))  # the rest, to 10
        return Group(above, self._decision_table(rows))

    def _traffic_line(self) -> str:
        s = self.traffic.stats
        return (
            f"simulated: {s['buyers']} buyers, {s['MessageSent']} messages, "
            f"{s['OrderPlaced']} orders, {s['SessionTransferred']} transfers, "
            f"{s['BuyerLeft']} gave up waiting, {s['AgentStatusChanged']} agent status changes"
        )

    def _queue_table(self) -> Table:
        table = _table("Queues", "group", "mode", "online", "queued", "oldest")
        status = self.traffic.agent_status
        rows = [(g.name, g.name, g.mode or self.shop.mode, g.agents) for g in self.shop.groups]
        if "(pool)" in self.queues:  # several groups take unmatched buyers: one shared line
            pooled = tuple(a for g in self.shop.groups if g.accept_unmatched for a in g.agents)
            rows.append(("(pool)", "unmatched pool", self.shop.mode, pooled))
        for label, name, mode, members in rows:
            length, oldest = self.queues.get(label, (0, 0.0))
            online = sum(status[a] is AgentStatus.ONLINE for a in set(members))
            style = "yellow" if length else ""
            wait = f"{oldest:.0f}s" if length else "-"
            online_of = f"{online}/{len(set(members))}"
            table.add_row(name, mode.value, online_of, Text(str(length), style), wait)
        return table

    def _rate_table(self) -> Table:
        table = _table("Assignments (last 10 s)", "reason", "per s", "total")
        window = Counter(reason for _, reason in self.recent)
        for reason in AssignReason:
            n = window[reason.value]
            style = "" if n or self.assigned[reason.value] else "dim"
            table.add_row(
                reason.value,
                f"{n / (RATE_WINDOW_MS / 1000):.1f}",
                str(self.assigned[reason.value]),
                style=style,
            )
        return table

    def _agent_cells(self) -> RenderableType:
        cells = []
        for agent in self.shop.agents:
            mark, style = _STATUS_STYLE[self.traffic.agent_status[agent.id]]
            load, pending = self.agents.get(agent.id, (0, 0))
            busy = "bold red" if pending > self.shop.busy_threshold else ""
            cells.append(
                Text.assemble(
                    (f"{mark} ", style),
                    f"{agent.id:<9}{load:>2}{self._cap(agent.id)} ",
                    (f"p{pending}", busy),
                )
            )
        legend = "Agents  ● online ◐ suspended ○ offline · open sessions/cap · p = owed replies"
        return Group(Text(legend, style="italic"), Columns(cells, padding=(0, 3)))

    def _cap(self, agent_id: str) -> str:
        """ "/cap" (the agent's own, else its first group's, else the shop's); "" without caps."""
        if not self.shop.queue.enabled:
            return "   "
        agent = next(a for a in self.shop.agents if a.id == agent_id)
        group_caps = [g.cap for g in self.shop.groups if agent_id in g.agents and g.cap]
        cap = agent.cap or (group_caps[0] if group_caps else self.shop.queue.default_cap)
        return f"/{cap:<2}"

    def _decision_table(self, rows: int) -> Table:
        table = _table("Last decisions", "time", "decision", "buyer", "agent", "detail")
        for line in list(reversed(self.lines))[:rows]:
            clock = f"{datetime.fromtimestamp(line.ts / 1000).astimezone():%H:%M:%S}"
            table.add_row(clock, Text(line.what, line.style), line.buyer, line.agent, line.detail)
        return table

    # ----------------------------------------------------------------- plain text lines

    def progress(self, elapsed: float) -> str:
        """One line: how the run is going."""
        waiting = sum(length for length, _ in self.queues.values())
        return (
            f"[{elapsed:4.0f}s] buyers {self.traffic.stats['buyers']}"
            f" | assigned {sum(self.assigned.values())} ({_counts(self.assigned)})"
            f" | waiting {waiting} | left {self.queue['left']} | expired {self.queue['expired']}"
            f" | closed {sum(self.closed.values())} | rejected {self.rejected}"
        )

    def summary(self, elapsed: float, rate: float, seed: int) -> list[str]:
        """The end-of-run summary."""
        q, s = self.queue, self.traffic.stats
        return [
            f"Summary: {elapsed:.0f} s of traffic, shop {self.shop.id}, "
            f"arrival rate {rate:g}/s, seed {seed}",
            f"  simulated    {s['buyers']} buyers, {s['BuyerInquired']} inquiries, "
            f"{s['MessageSent']} messages, {s['OrderPlaced']} orders, "
            f"{s['SessionTransferred']} transfers, {s['AgentStatusChanged']} agent status changes",
            f"  assignments  {sum(self.assigned.values())}: {_counts(self.assigned)}",
            f"  queue        queued {q['queued']}, served {q['dequeued']}, left {q['left']}, "
            f"expired {q['expired']}",
            f"  closed       {sum(self.closed.values())}: {_counts(self.closed)}",
            f"  rejected     {self.rejected}",
        ]


def _table(title: str, *columns: str) -> Table:
    return Table(*columns, title=title, title_justify="left", box=box.SIMPLE_HEAD)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {n}" for k, n in counter.most_common()) or "none"
