"""End-to-end benchmark: the daemon against a raw aiokafka ceiling on the same broker, and
its latency under load.

    .venv/bin/python bench/e2e.py [--events N] [--rates 1000,5000] [--seconds S]
    .venv/bin/python bench/e2e.py --latency-only --max-rate R
    .venv/bin/python bench/e2e.py --compare CHECKOUT   # A/B: that checkout's daemon, then ours

Starts a Tansu broker and a redis-server on free loopback ports, records a realistic event
stream (the 200-agent mix of bench/core.py) and, in one run:

1. ceiling — a plain aiokafka loop consumes the stream in batches, `orjson.loads` and
   `orjson.dumps` each record and produces it to an output topic, committing per batch;
2. daemon — `fenliu run` (a real subprocess) consumes the same stream;
3. latency — at 1,000 and 5,000 events/s (`--rates`) and at half the daemon's maximum
   measured in 2. (or half `--max-rate`), each rate with a fresh daemon on its own topics
   and Redis key prefix, fed the first `rate × --seconds` events of the stream; for every
   inquiry, the time from handing it to the producer until its first output (assignment
   or queue update) is read back. Each rate starts with the floor: the same load against
   bench/e2e_load.py's `echo` in the daemon's place (consumes as the daemon does, answers
   every inquiry at once; no routing, no Redis) — what the broker, the clients and this
   machine cost before the daemon adds anything.

In the latency runs the daemon is pinned to CPU 0 and the load generator (bench/e2e_load.py,
producer and measuring consumer) runs in its own process pinned to CPU 1, with the broker
and redis-server beside it (`--broker-cpu`, `--redis-cpu`): no process of the bench but the
daemon runs on CPU 0 (other people's processes may; the table says how busy each CPU was).
Phases 1 and 2 run unpinned, as they always have. With `--compare`, every daemon measure
(2. and each latency rate) runs first with the daemon of another checkout (e.g. `git
worktree add ../before HEAD~1`), then with this one's, back to back: the ratios between
the two are what the noisy machine lets one quote; half the maximum is this one's.

Prints events/s for both, the ratio daemon / ceiling (target ≥ 0.6) and per rate p50, p99
and max latency (target p99 ≤ 25 ms at 5,000 events/s and ≤ 50 ms at half the maximum),
with the median split of the path: inbound (send → the daemon takes up the batch), inside
the daemon (→ output handed to its producer) and outbound (→ read back), the same split
among the slowest 1%, and the daemon's full garbage collections during the run. Machine
noise matters: quote figures from one run, the daemon's beside the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import multiprocessing
import os
import platform
import signal
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import SHOP, mix_shop, record_mix
from e2e_load import Floor, Load, Record, Report, echo, run

from daemon.config import TopicsConfig
from daemon.core.config import ShopConfig
from daemon.dev.stack import Broker, RedisServer, write_daemon_config
from daemon.tools.topics_admin import create_topics
from topics.codec import encode
from topics.events import (
    AgentStatsReported,
    AgentStatusChanged,
    BuyerInquired,
    InputEvent,
    MessageSent,
)

PARTITIONS = 4
REPO = Path(__file__).resolve().parents[1]
BATCH = 5000
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
DAEMON_CPU, LOAD_CPU = 0, 1  # latency runs: the daemon alone on one CPU


def say(text: str) -> None:
    """Progress and results, printed at once."""
    print(text, flush=True)


def topics_named(prefix: str) -> TopicsConfig:
    """Six topic names under `prefix`."""
    return TopicsConfig(**{f: f"{prefix}.{f}" for f in TopicsConfig.model_fields})


def topic_field(event: InputEvent) -> str:
    """Which configured input topic an event travels on."""
    if isinstance(event, MessageSent):
        return "messages"
    if isinstance(event, AgentStatusChanged | AgentStatsReported):
        return "agent_status"
    return "inquiries"


def recorded_stream(limit: int) -> list[Record]:
    """The first `limit` events of the bench/core.py mix, encoded as Kafka records."""
    events, _ = record_mix(mix_shop())
    key = SHOP.encode()
    return [
        (topic_field(ev), key, encode(ev), ev.id, isinstance(ev, BuyerInquired))
        for _, ev in events[:limit]
    ]


# ------------------------------------------------------------------ config for the daemon


def shop_toml(shop: ShopConfig) -> str:
    """The shop as a TOML shop file (durations written in milliseconds)."""
    data = shop.model_dump(mode="json")
    lines = [f"{k} = {_value(k, v)}" for k, v in data.items() if not isinstance(v, dict | list)]
    lines.append("[queue]")
    lines += [f"{k} = {_value(k, v)}" for k, v in data["queue"].items()]
    for agent in data["agents"]:
        lines.append("[[agents]]")
        lines += [f"{k} = {_value(k, v)}" for k, v in agent.items() if v is not None]
    for group in data["groups"]:
        lines.append("[[groups]]")
        lines += [
            f"{k} = {_value(k, v)}" for k, v in group.items() if v is not None and k != "match"
        ]
        lines.append("[groups.match]")
        lines += [f"{k} = {_value(k, v)}" for k, v in group["match"].items()]
    return "\n".join(lines) + "\n"


_DURATIONS = {"sticky_window", "conversion_window", "session_timeout", "repeat_entry_window",
              "avg_handle_time", "max_wait", "update_interval"}  # fmt: skip


def _value(key: str, value: Any) -> str:
    if key in _DURATIONS:
        return f'"{value}ms"'
    return orjson.dumps(value).decode()


def write_config(
    folder: Path, broker: Broker, redis: RedisServer, topics: TopicsConfig, name: str = ""
) -> Path:
    """fenliu.toml plus the shop file, in `folder`; each run its own consumer group and
    Redis key prefix (`name`, by default the inquiries topic's)."""
    return write_daemon_config(
        folder, bootstrap=broker.bootstrap, redis_url=redis.url,
        shops={SHOP: shop_toml(mix_shop())}, topics=topics, group_id=name or topics.inquiries,
        key_prefix=name or topics.inquiries,
    )  # fmt: skip


# ----------------------------------------------------------------------------- helpers


async def produce_all(bootstrap: str, topics: TopicsConfig, stream: list[Record]) -> None:
    """Write the whole stream into the input topics, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    await producer.start()
    try:
        pending = [
            await producer.send(getattr(topics, field), value, key=key)
            for field, key, value, _, _ in stream
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def metric_sum(http: str, *prefixes: str) -> float:
    """The sum of the daemon's /metrics samples whose line starts with one of `prefixes`
    (-1 if the daemon does not answer)."""
    try:
        with urllib.request.urlopen(f"http://{http}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return -1.0
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefixes)
    )


def events_in(http: str) -> int:
    """Records the daemon consumed so far, read from its /metrics."""
    return int(metric_sum(http, "fenliu_events_in_total", 'fenliu_rejects_total{reason="invalid"'))


def full_collections(http: str) -> tuple[float, float]:
    """The daemon's full garbage collections so far: how many, and their seconds in all."""
    count = metric_sum(http, 'fenliu_gc_pause_seconds_count{generation="2"}')
    spent = metric_sum(http, 'fenliu_gc_pause_seconds_sum{generation="2"}')
    return count, spent


def ready(http: str) -> bool:
    """Whether the daemon answers /readyz with 200."""
    try:
        with urllib.request.urlopen(f"http://{http}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


class Daemon:
    """`fenliu run` as a subprocess, pinned to `cpu` from its first instruction if given;
    the daemon's code is the checkout `source` (by default this one)."""

    def __init__(self, config: Path, cpu: int | None = None, source: Path = REPO) -> None:
        self.config = config
        self.cpu = cpu
        self.source = source
        self.http = config.read_text().split('listen = "', 1)[1].split('"', 1)[0]
        self.proc: asyncio.subprocess.Process | None = None
        self.name = f"the daemon (see {config.parent / 'daemon.log'})"
        self._collections = (0.0, 0.0)  # full collections (count, seconds) when it was ready

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    def ready(self) -> bool:
        """Whether the daemon answers /readyz with 200 (its collections so far are noted)."""
        if not ready(self.http):
            return False
        self._collections = full_collections(self.http)
        return True

    def describe(self) -> str:
        """Where its threads ran, and its full collections since it was ready."""
        (count, spent), (count0, spent0) = full_collections(self.http), self._collections
        return (
            f"{cpus_of(self.pid)}; full collections under load: {count - count0:.0f}, "
            f"{(spent - spent0) * 1000:.0f} ms in all"
        )

    async def start(self) -> None:
        log = (self.config.parent / "daemon.log").open("ab")
        cpu = self.cpu

        def setup() -> None:  # in the child, before exec
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            die_with_parent()

        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon.cli", "run", "--config", str(self.config),
            stdout=log, stderr=log, cwd=self.source,
            env={**os.environ, "PYTHONPATH": str(self.source)}, preexec_fn=setup,
        )  # fmt: skip
        log.close()

    async def stop(self) -> None:
        """Stop our child by its pid: SIGTERM, then SIGKILL after 15 s."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class Echo:
    """The floor: bench/e2e_load.py's `echo` in a process pinned to `cpu`, in the daemon's
    place (no routing, no Redis)."""

    name = "the echo"

    def __init__(self, bootstrap: str, topics: TopicsConfig, cpu: int | None) -> None:
        self.floor = Floor(bootstrap=bootstrap, topics=topics.model_dump(), cpu=cpu)
        self.proc: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self._ready = False

    async def start(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.conn, theirs = spawn.Pipe()
        self.proc = spawn.Process(target=echo, args=(self.floor, theirs), name="e2e-echo")
        self.proc.start()
        theirs.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None and self.proc.pid is not None
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc is not None and self.proc.exitcode is not None

    def ready(self) -> bool:
        assert self.conn is not None
        if not self._ready and self.conn.poll():
            self._ready = self.conn.recv() == "ready"
        return self._ready

    def describe(self) -> str:
        return cpus_of(self.pid)

    async def stop(self) -> None:
        """Ask it to stop; terminate it by its pid if it does not within 15 s."""
        if self.proc is None or self.conn is None:
            return
        if self.proc.is_alive():
            self.conn.send("stop")
            await asyncio.to_thread(self.proc.join, 15)
        if self.proc.is_alive():
            self.proc.terminate()
            await asyncio.to_thread(self.proc.join)
        self.conn.close()


def die_with_parent() -> None:
    """In a child before exec: Linux SIGKILLs it if the bench dies without stopping it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of our child `pid` (threads it starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


def cpus_of(pid: int) -> str:
    """The CPUs each thread of `pid` may run on, e.g. "0 (7 threads)"."""
    found = {
        tuple(sorted(os.sched_getaffinity(int(task.name))))
        for task in Path(f"/proc/{pid}/task").iterdir()
    }
    threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
    return f"{'/'.join(','.join(map(str, c)) for c in sorted(found))} ({threads} threads)"


# ------------------------------------------------------------------------------ measures


async def ceiling(bootstrap: str, topics: TopicsConfig, total: int) -> float:
    """Events/s of a bare consume → loads → dumps → produce → commit loop."""
    consumer = AIOKafkaConsumer(
        topics.inquiries, topics.messages, topics.agent_status,
        bootstrap_servers=bootstrap, group_id=f"ceiling-{topics.inquiries}",
        enable_auto_commit=False, auto_offset_reset="earliest",
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await consumer.start()
    await producer.start()
    seen, started = 0, 0.0
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            if not started and batch:
                started = time.perf_counter()
            pending = []
            for records in batch.values():
                for r in records:
                    out = orjson.dumps(orjson.loads(r.value))
                    pending.append(await producer.send(topics.assignments, out, key=r.key))
                    seen += 1
            await asyncio.gather(*pending)
            if batch:
                await consumer.commit()
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()


async def daemon_rate(folder: Path, total: int, source: Path) -> float:
    """Events/s of the daemon (of checkout `source`) consuming the pre-produced stream."""
    daemon = Daemon(folder / "fenliu.toml", source=source)
    await daemon.start()
    assert daemon.proc is not None
    first_at, first_count = 0.0, 0
    try:
        while daemon.proc.returncode is None:
            count = events_in(daemon.http)
            now = time.perf_counter()
            if count > 0 and not first_at:
                first_at, first_count = now, count
            if count >= total:
                return (total - first_count) / (now - first_at)
            await asyncio.sleep(0.02)
        raise RuntimeError(f"the daemon exited; see {folder / 'daemon.log'}")
    finally:
        await daemon.stop()


async def latency(
    responder: Daemon | Echo, servers: dict[str, int], bootstrap: str, topics: TopicsConfig,
    stream: list[Record], rate: float,
) -> tuple[Report, str]:  # fmt: skip
    """One latency run: the responder (a fresh daemon, or the echo) on CPU 0, the load
    generator's process on CPU 1; its report, and where the responder ran."""
    await responder.start()
    child = None
    try:
        while not responder.ready():  # joined its group, restored its partitions
            if responder.exited():
                raise RuntimeError(f"{responder.name} exited")
            await asyncio.sleep(0.1)
        spawn = multiprocessing.get_context("spawn")
        ours, theirs = spawn.Pipe(duplex=False)
        load = Load(
            bootstrap=bootstrap, topics=topics.model_dump(), partitions=PARTITIONS,
            stream=stream, rate=rate, cpu=LOAD_CPU, watch={"daemon": responder.pid, **servers},
        )  # fmt: skip
        child = spawn.Process(target=run, args=(load, theirs), name="e2e-load")
        child.start()
        theirs.close()
        while not ours.poll():
            if child.exitcode is not None or responder.exited():
                if ours.poll():
                    break
                raise RuntimeError(f"the load generator or {responder.name} exited")
            await asyncio.sleep(0.1)
        report: Report = ours.recv()
        where = responder.describe()
    finally:
        if child is not None:
            await asyncio.to_thread(child.join, 30)
            if child.is_alive():
                child.terminate()  # by its pid
                await asyncio.to_thread(child.join)
        await responder.stop()
    return report, where


def pct(values: list[float], p: float) -> float:
    """The p-th percentile of sorted values."""
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


def latency_row(label: str, rate: float, report: Report) -> str:
    """One line of the latency table."""
    lat = sorted(a.latency_ms for a in report.answers)
    inbound = sorted(a.decided_ms for a in report.answers)
    inside = sorted(a.handed_ms - a.decided_ms for a in report.answers)
    outbound = sorted(a.latency_ms - a.handed_ms for a in report.answers)
    fed = report.events / report.seconds if report.seconds else float("nan")
    busy = " / ".join(f"{b:.0%}" for b in report.busy)
    return (
        f"| {label}{rate:,.0f} | {fed:,.0f} | {pct(lat, 50):.1f} | {pct(lat, 99):.1f} | "
        f"{lat[-1] if lat else float('nan'):.1f} | {len(lat):,} / {report.inquiries:,} | "
        f"{pct(inbound, 50):.1f} / {pct(inside, 50):.1f} / {pct(outbound, 50):.1f} | "
        f"{tail_split(report)} | {report.cores['daemon']:.2f} | {busy} |"
    )


def tail_split(report: Report) -> str:
    """Where the slowest 1% spent their time: the medians of in / daemon / out among the
    answers at or above p99."""
    cut = pct(sorted(a.latency_ms for a in report.answers), 99)
    tail = [a for a in report.answers if a.latency_ms >= cut]
    parts = (
        sorted(a.decided_ms for a in tail),
        sorted(a.handed_ms - a.decided_ms for a in tail),
        sorted(a.latency_ms - a.handed_ms for a in tail),
    )
    return " / ".join(f"{pct(part, 50):.1f}" for part in parts)


TABLE_HEAD = (
    "| rate events/s | fed | p50 ms | p99 ms | max ms | n answered / inquiries | "
    "median in / daemon / out ms | p99 tail in / daemon / out ms | daemon cores | "
    "CPU 0 / 1 busy |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


async def throughput(
    broker: Broker, redis: RedisServer, tmp: Path, stream: list[Record], sources: dict[str, Path]
) -> float:
    """Phases 1 and 2 (unpinned): the ceiling and the daemon's maximum (of each checkout in
    `sources`, one after the other); the last daemon's maximum."""
    total = len(stream)
    main_topics = topics_named("bench")
    await create_topics(broker.bootstrap, main_topics, partitions=PARTITIONS)
    say(f"producing {total} records to {broker.bootstrap} ...")
    await produce_all(broker.bootstrap, main_topics, stream)
    say("ceiling: aiokafka consume → orjson loads/dumps → produce → commit ...")
    top = await ceiling(broker.bootstrap, main_topics, total)
    say(f"  ceiling   {top:10,.0f} events/s")
    rate = 0.0
    for i, (label, source) in enumerate(sources.items()):
        say(f"{label}daemon: fenliu run over the same records ({source}) ...")
        folder = tmp / f"daemon{i}"
        write_config(folder, broker, redis, main_topics, name=f"bench-daemon{i}")
        rate = await daemon_rate(folder, total, source)
        say(f"  {label}daemon    {rate:10,.0f} events/s")
        say(f"  {label}ratio daemon / ceiling = {rate / top:.2f}  (target ≥ 0.6)")
    return rate


async def latencies(
    broker: Broker, redis: RedisServer, tmp: Path, stream: list[Record], rates: list[float],
    seconds: float, sources: dict[str, Path],
) -> None:  # fmt: skip
    """Phase 3: per rate, the floor (the echo in the daemon's place), then one fresh daemon
    (per checkout in `sources`, back to back), each on its own topics and key prefix."""
    say(f"latency: daemon on CPU {DAEMON_CPU}; load generator on CPU {LOAD_CPU}; "
        f"broker {cpus_of(broker.pid or 0)}, redis {cpus_of(redis.pid or 0)}")  # fmt: skip
    servers = {"broker": broker.pid or 0, "redis": redis.pid or 0}
    rows = []
    choices: dict[str, Path | None] = {"floor ": None, **sources}
    runs = [(rate, label, source) for rate in rates for label, source in choices.items()]
    for i, (rate, label, source) in enumerate(runs):
        fed = stream[: max(1, int(rate * seconds))]
        topics = topics_named(f"lat{i}")
        await create_topics(broker.bootstrap, topics, partitions=PARTITIONS)
        folder = tmp / f"latency{i}"
        write_config(folder, broker, redis, topics)
        responder: Daemon | Echo = (
            Echo(broker.bootstrap, topics, DAEMON_CPU)
            if source is None
            else Daemon(folder / "fenliu.toml", cpu=DAEMON_CPU, source=source)
        )
        say(f"  {label}{rate:,.0f} events/s: {len(fed):,} events, {responder.name} ...")
        report, where = await latency(responder, servers, broker.bootstrap, topics, fed, rate)
        cores = ", ".join(f"{name} {used:.2f}" for name, used in report.cores.items())
        say(f"    threads on CPU {where}; load generator on CPU {report.cpus}")
        say(f"    cores used: {cores}")
        rows.append(latency_row(label, rate, report))
        say(rows[-1])
    say("inquiry → first output (targets: p99 ≤ 25 ms at 5,000/s, ≤ 50 ms at half the max)")
    say(TABLE_HEAD)
    for row in rows:
        say(row)


async def main(args: argparse.Namespace) -> int:
    say(f"fenliu e2e bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    say(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    say(f"recording {args.events} events of the 200-agent mix ...")
    stream = recorded_stream(args.events)
    with Broker() as broker, RedisServer() as redis, tempfile.TemporaryDirectory() as tmp:
        sources = {"": REPO}
        if args.compare is not None:
            sources = {"before ": args.compare.resolve(), "after ": REPO}
        if args.latency_only:
            maximum = args.max_rate
        else:
            maximum = await throughput(broker, redis, Path(tmp), stream, sources)
        for server, cpu in ((broker, args.broker_cpu), (redis, args.redis_cpu)):
            if cpu != "any":
                pin(server.pid or 0, {int(cpu)})
        rates = [*args.rates, maximum / 2]
        await latencies(broker, redis, Path(tmp), stream, rates, args.seconds, sources)
    return 0


def rate_list(text: str) -> list[float]:
    """Comma-separated rates: "1000,5000" -> [1000.0, 5000.0]."""
    return [float(part) for part in text.split(",") if part]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events in the stream")
    parser.add_argument(
        "--rates", type=rate_list, default=[1000.0, 5000.0],
        help="latency runs' rates, events/s (half the maximum is always added)",
    )  # fmt: skip
    parser.add_argument(
        "--seconds", type=float, default=15.0,
        help="each latency run feeds rate × seconds events (at most --events)",
    )  # fmt: skip
    parser.add_argument(
        "--latency-only", action="store_true",
        help="skip the ceiling and throughput runs (give --max-rate)",
    )  # fmt: skip
    parser.add_argument("--max-rate", type=float, help="with --latency-only: the daemon's max")
    for server, default in (("broker", LOAD_CPU), ("redis", LOAD_CPU)):
        parser.add_argument(
            f"--{server}-cpu", choices=["0", "1", "any"], default=str(default),
            help=f"pin the {server} for the latency runs (default: {default})",
        )  # fmt: skip
    parser.add_argument(
        "--compare", type=Path, metavar="CHECKOUT",
        help="run each daemon measure with another checkout's daemon too, just before",
    )  # fmt: skip
    args = parser.parse_args()
    if args.latency_only and args.max_rate is None:
        parser.error("--latency-only needs --max-rate")
    sys.exit(asyncio.run(main(args)))
