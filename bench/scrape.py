"""Scrape bench: routing latency while /metrics is hammered, and the scrape's time and size
(issue 23, contract §6 "Watching never slows routing").

    .venv/bin/python bench/scrape.py [--shops 1,3000] [--inquiries 150] [--clients 16]

Starts a Tansu broker and a redis-server on free loopback ports and, for each shop count, a
real `fenliu run` (shop files as bench/fleet.py writes them: one "traffic" shop like
config/shops/small.toml, the rest copies of small.toml and big.toml). Then measures:

1. the scrape: time and size of one GET /metrics (best of 5) and its sample lines;
2. routing latency, one inquiry at a time, every 50 ms: from handing the inquiry to the
   producer until its assignment is read back from the output topic — quiet, then while
   `--clients` processes fetch /metrics on keep-alive connections as fast as they are
   answered (each counts its 200s and 429s). Quiet and hammered alternate twice; targets:
   p50 hammered ≤ 1.5 × quiet, max hammered ≤ quiet max + 50 ms;
3. in this process, the cost of a snapshot at that shop count: one whole build, and the
   longest of the loop's `Metrics.refresh` calls over one round.

Prints figures only (no assertions). The machine matters: quote ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fleet import SHOP, shop_files

from daemon.config import TopicsConfig
from daemon.config.files import load_shop_file
from daemon.core.engine import Engine
from daemon.dev.stack import Broker, RedisServer
from daemon.service import metrics as metrics_module
from daemon.service.metrics import Metrics
from daemon.tools.topics_admin import create_topics
from tests.conftest import unique_topics
from tests.e2e import DaemonProcess, write_config

GAP_S = 0.05  # between two timed inquiries


def say(text: str) -> None:
    """Progress and results, printed at once."""
    print(text, flush=True)


def hammer(address: str, stop: Any, counts: Any) -> None:
    """GET /metrics on a keep-alive connection until `stop` is set, as fast as answered;
    put None once started, then (200s, 429s, other, seconds) on `counts`."""
    host, port = address.rsplit(":", 1)
    ok = refused = other = 0
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    counts.put(None)  # started
    started = time.monotonic()
    while not stop.is_set():
        try:
            conn.request("GET", "/metrics")
            answer = conn.getresponse()
            answer.read()
            if answer.status == 200:
                ok += 1
            elif answer.status == 429:
                refused += 1
            else:
                other += 1
            if answer.will_close:
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
        except (OSError, http.client.HTTPException):
            other += 1
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.close()
    counts.put((ok, refused, other, time.monotonic() - started))


class Reader:
    """Reads the assignments topic (fetch wait 5 ms, as bench/e2e_load.py measures) and
    notes when each buyer's assignment was read."""

    def __init__(self, bootstrap: str, topics: TopicsConfig) -> None:
        self.consumer = AIOKafkaConsumer(
            topics.assignments, bootstrap_servers=bootstrap, group_id=None,
            auto_offset_reset="latest", fetch_max_wait_ms=5,
        )  # fmt: skip
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        self.topics = topics
        self.read: dict[str, asyncio.Future[float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        await self.consumer.seek_to_end()
        self._task = asyncio.create_task(self._collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()
        await self.producer.stop()

    async def _collect(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    buyer = orjson.loads(record.value).get("buyer_id", "")
                    future = self.read.get(buyer)
                    if future is not None and not future.done():
                        future.set_result(now)

    async def send(self, topic: str, body: dict[str, Any]) -> None:
        body = {"id": f"{SHOP}-{time.monotonic_ns()}", "shop_id": SHOP,
                "ts": int(time.time() * 1000), **body}  # fmt: skip
        await self.producer.send_and_wait(topic, orjson.dumps(body), key=SHOP.encode())

    async def latency_ms(self, buyer: str) -> float:
        """Send an inquiry of `buyer`; milliseconds until its assignment is read back."""
        future = self.read[buyer] = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        await self.send(self.topics.inquiries, {"type": "inquiry", "buyer_id": buyer})
        read: float = await asyncio.wait_for(future, 30)
        return (read - started) * 1000


def scrape(address: str) -> tuple[float, int, int]:
    """One GET /metrics: (seconds, bytes, sample lines)."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    started = time.perf_counter()
    conn.request("GET", "/metrics")
    body = conn.getresponse().read()
    took = time.perf_counter() - started
    conn.close()
    samples = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
    return took, len(body), samples


async def latencies(reader: Reader, count: int, tag: str) -> list[float]:
    """`count` inquiries, one at a time: milliseconds from send to assignment read back."""
    out = []
    for i in range(count):
        out.append(await reader.latency_ms(f"{tag}-{i}"))
        await asyncio.sleep(GAP_S)
    return out


def row(label: str, values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
    return (
        f"  {label:<22} p50 {statistics.median(values):7.1f} ms  p99 {p99:7.1f} ms  "
        f"max {values[-1]:7.1f} ms  (n={len(values)})"
    )


def snapshot_cost(files: dict[str, str], folder: Path) -> tuple[float, float, int]:
    """(whole build ms, longest refresh call ms, refresh calls) for these shops, here."""
    configs = {}
    for name, text in files.items():
        path = folder / f"{name}.toml"
        path.write_text(text)
        configs[name] = load_shop_file(path)
    engine = Engine(configs, track=True)
    now = [0.0]
    metrics = Metrics(clock=lambda: now[0])
    metrics.watch(lambda: engine, dict, dict, ready=lambda: True)
    started = time.perf_counter()
    metrics.build()
    whole = time.perf_counter() - started
    now[0] += metrics_module.SNAPSHOT_EVERY_S
    longest, calls = 0.0, 0
    while True:
        started = time.perf_counter()
        done = metrics.refresh()
        longest = max(longest, time.perf_counter() - started)
        calls += 1
        if done:
            return whole * 1000, longest * 1000, calls


async def one_count(
    folder: Path, broker: Broker, redis: RedisServer, count: int, inquiries: int, clients: int
) -> None:
    files = shop_files(count)
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=4)
    config = write_config(
        folder, bootstrap=broker.bootstrap, redis_url=redis.url, topics=topics, shops=files
    )
    daemon = DaemonProcess(config)
    await asyncio.to_thread(daemon.start, 300.0)
    say(f"{count} shop(s): daemon ready")
    try:
        reader = Reader(broker.bootstrap, topics)
        await reader.start()
        try:
            for agent in ("xiaomei", "ajie", "lele"):
                await reader.send(
                    topics.agent_status,
                    {"type": "agent_status", "agent_id": agent, "status": "online"},
                )
            await latencies(reader, 10, "warm")
            await asyncio.sleep(1.5)  # a fresh snapshot, with the traffic shop's agents online
            best = min([await asyncio.to_thread(scrape, daemon.http) for _ in range(5)])
            say(f"  scrape: {best[0] * 1000:.1f} ms, {best[1] / 1024:.0f} KiB, {best[2]:,} samples")
            quiet: list[float] = []
            loud: list[float] = []
            spawn = multiprocessing.get_context("spawn")
            for round_ in (1, 2):
                quiet += await latencies(reader, inquiries // 2, f"q{round_}")
                stop, counts = spawn.Event(), spawn.Queue()
                procs = [
                    spawn.Process(target=hammer, args=(daemon.http, stop, counts))
                    for _ in range(clients)
                ]
                for proc in procs:
                    proc.start()
                for _ in procs:  # every client has started (spawned, imported) and asks
                    await asyncio.to_thread(counts.get, True, 120)
                await asyncio.sleep(1.0)
                started = time.monotonic()
                loud += await latencies(reader, inquiries // 2, f"h{round_}")
                seconds = time.monotonic() - started
                stop.set()
                answers = [await asyncio.to_thread(counts.get, True, 30) for _ in procs]
                for proc in procs:
                    await asyncio.to_thread(proc.join)
                ok, refused, other = (sum(a[i] for a in answers) for i in range(3))
                spell = max(a[3] for a in answers)
                say(
                    f"  round {round_}: {clients} clients on /metrics for {spell:.0f} s "
                    f"({seconds:.0f} s timed): {ok} answered 200, {refused} 429, {other} "
                    f"other ({(ok + refused) / spell:.0f} answers/s)"
                )
            say(row("quiet", quiet))
            say(row(f"{clients} clients on /metrics", loud))
            q50, l50 = statistics.median(quiet), statistics.median(loud)
            say(
                f"  ratio p50 hammered/quiet {l50 / q50:.2f} (target ≤ 1.5); max hammered - "
                f"quiet max {max(loud) - max(quiet):+.1f} ms (target ≤ +50)"
            )
        finally:
            await reader.stop()
    finally:
        daemon.stop()
    whole, longest, calls = snapshot_cost(files, folder / "cost")
    say(
        f"  snapshot here: whole build {whole:.1f} ms; in the loop {calls} refresh calls, "
        f"longest {longest:.1f} ms"
    )


async def main(counts: list[int], inquiries: int, clients: int) -> int:
    say(f"fenliu scrape bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    say(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    say(
        f"command: .venv/bin/python bench/scrape.py --shops {','.join(map(str, counts))} "
        f"--inquiries {inquiries} --clients {clients}"
    )
    with Broker() as broker, RedisServer() as redis, tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            folder = Path(tmp) / f"s{count}"
            (folder / "cost").mkdir(parents=True)
            await one_count(folder, broker, redis, count, inquiries, clients)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shops", default="1,3000", help="shop counts (default 1,3000)")
    parser.add_argument("--inquiries", type=int, default=150, help="timed inquiries per count")
    parser.add_argument("--clients", type=int, default=16, help="processes hammering /metrics")
    args = parser.parse_args()
    counts = [int(c) for c in args.shops.split(",")]
    sys.exit(asyncio.run(main(counts, args.inquiries, args.clients)))
