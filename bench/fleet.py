"""Fleet bench: thousands of shops in one daemon and over three (issue 10, contract §7).

    .venv/bin/python bench/fleet.py [--shops 3000] [--events 60000]

Starts a Tansu broker and a redis-server on free loopback ports, writes `--shops` shop files
(a tenth copies of config/shops/big.toml, the rest of config/shops/small.toml; one of the
small ones, "traffic", gets the events) and measures, through real `fenliu run` processes:

1. one instance with every shop: time from start to /readyz 200, resident memory (RSS) per
   shop against an instance with the traffic shop alone, the time a reload (POST
   /-/reload, what SIGHUP does) takes to read and apply every file (`reload_ok` seconds),
   and one /metrics scrape;
2. the cost of an event: the same steady stream for one shop (inquiries, buyer messages,
   agent replies; see `traffic`), consumed by an instance with that shop alone and by
   one with every shop, from the
   daemon's first records (its `consuming` log line) until a marker inquiry behind the
   stream is answered; two rounds, alternated, and the best of each; events/s and the
   ratio (target: cost with all shops ≤ 1.5 × cost with one);
3. three instances sharing the shops: time until all three are ready, RSS of each.

Prints each figure as it is measured. Machine noise matters: quote figures from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from e2e import Record, produce_all, topic_field

from daemon.config import TopicsConfig
from daemon.dev.stack import Broker, RedisServer
from daemon.tools.topics_admin import create_topics
from tests.conftest import unique_topics
from tests.e2e import DaemonProcess, write_config
from topics.codec import encode
from topics.events import AgentStatus, AgentStatusChanged, BuyerInquired, InputEvent, MessageSent

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 6
BIG_EVERY = 10  # one shop in ten is a copy of big.toml
SHOP = "traffic"


def say(text: str) -> None:
    """Progress and results, printed at once."""
    print(text, flush=True)


def shop_files(count: int) -> dict[str, str]:
    """`count` shop files: the traffic shop, then copies of big.toml and small.toml."""
    big = (REPO / "config/shops/big.toml").read_text()
    small = (REPO / "config/shops/small.toml").read_text()
    files = {SHOP: re.sub(r'(?m)^id = ".*"$', f'id = "{SHOP}"', small, count=1)}
    for i in range(1, count):
        template, name = (big, "big") if i % BIG_EVERY == 0 else (small, "small")
        shop_id = f"{name}-{i:05d}"
        files[shop_id] = re.sub(r'(?m)^id = ".*"$', f'id = "{shop_id}"', template, count=1)
    return files


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for pid {pid}")


def start_timed(daemon: DaemonProcess) -> float:
    """Start a daemon; seconds until /readyz answers 200."""
    started = time.monotonic()
    daemon.start(ready_within=180.0)
    return time.monotonic() - started


def reload_seconds(daemon: DaemonProcess) -> float:
    """Seconds for POST /-/reload, as the client sees it (the loop applies a reload
    between batches, so this includes up to one poll wait)."""
    started = time.monotonic()
    status, body = daemon.get("/-/reload", method="POST")
    took = time.monotonic() - started
    if status != 200:
        raise RuntimeError(f"reload answered {status}: {body}")
    return took


def reload_took(daemon: DaemonProcess) -> float:
    """The reload's own time: reading every file and applying it (`reload_ok` seconds)."""
    for line in reversed(daemon.log_path.read_text().splitlines()):
        if '"reload_ok"' in line:
            return float(orjson.loads(line)["seconds"])
    raise LookupError("the daemon never logged `reload_ok`")


MARKER = "fleet-marker"
BUYERS = 2000
T0 = 1_700_000_000_000


def traffic(total: int) -> list[Record]:
    """A steady stream for the traffic shop (a small.toml shop: no queue, three agents
    online): each buyer inquires, writes, is answered; then a marker inquiry whose output
    ends the measurement. Its cost per event does not depend on timing, so the runs with
    one and with thousands of shops do the same work."""
    events: list[InputEvent] = [
        AgentStatusChanged(f"on-{agent}", SHOP, T0, agent, AgentStatus.ONLINE)
        for agent in ("xiaomei", "ajie", "lele")
    ]
    n = 0
    while len(events) < total:
        buyer, ts = f"b{n % BUYERS}", T0 + n
        events.append(BuyerInquired(f"i{n}", SHOP, ts, buyer))
        events.append(MessageSent(f"m{n}", SHOP, ts, buyer, "buyer"))
        events.append(MessageSent(f"r{n}", SHOP, ts, buyer, "agent", "xiaomei"))
        n += 1
    events = events[:total]
    events.append(BuyerInquired(MARKER, SHOP, T0 + n + 1, MARKER))
    key = SHOP.encode()
    return [(topic_field(e), key, encode(e), e.id, isinstance(e, BuyerInquired)) for e in events]


async def output_reader(bootstrap: str, topics: TopicsConfig) -> AIOKafkaConsumer:
    """A consumer of the output topics positioned at their current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    await consumer.topics()
    parts = [
        TopicPartition(name, p)
        for name in (topics.assignments, topics.queue_updates)
        for p in sorted(consumer.partitions_for_topic(name) or ())
    ]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    return consumer


def first_consumed_at(daemon: DaemonProcess) -> float:
    """Epoch seconds of the daemon's `consuming` log line (its first records)."""
    for line in daemon.log_path.read_text().splitlines():
        if '"consuming"' in line:
            stamp = orjson.loads(line)["timestamp"]
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    raise LookupError("the daemon never logged `consuming`")


async def event_rate(daemon: DaemonProcess, reader: AIOKafkaConsumer, total: int) -> float:
    """Events/s of a started daemon over `total` pre-produced events: from its first
    records (its `consuming` log line) until the marker behind them is answered."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        batch = await reader.getmany(timeout_ms=200, max_records=10_000)
        for records in batch.values():
            for record in records:
                if orjson.loads(record.value).get("buyer_id") == MARKER:
                    return total / (time.time() - first_consumed_at(daemon))
    raise TimeoutError(f"{total} events not consumed in 600 s")


def scrape_seconds(daemon: DaemonProcess) -> float:
    """Seconds one GET /metrics takes."""
    started = time.monotonic()
    status, _ = daemon.get("/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return time.monotonic() - started


@dataclass(frozen=True)
class Figures:
    """What one instance showed."""

    ready_s: float
    rss_mb: float
    reload_s: float
    scrape_s: float
    rate: float

    def __str__(self) -> str:
        return (
            f"  ready {self.ready_s:.2f}s, RSS {self.rss_mb:.0f} MiB, reload "
            f"{self.reload_s * 1000:.0f} ms, /metrics {self.scrape_s * 1000:.0f} ms, "
            f"{self.rate:,.0f} events/s"
        )


async def one_instance(
    folder: Path, bootstrap: str, redis_url: str, shops: dict[str, str], total: int
) -> Figures:
    """What one instance with `shops` shows, consuming `total` events of one shop."""
    topics = unique_topics()
    await create_topics(bootstrap, topics, partitions=PARTITIONS)
    await produce_all(bootstrap, topics, traffic(total))
    config = write_config(
        folder, bootstrap=bootstrap, redis_url=redis_url, topics=topics, shops=shops
    )
    daemon = DaemonProcess(config)
    reader = await output_reader(bootstrap, topics)
    try:
        ready_s = await asyncio.to_thread(start_timed, daemon)
        rate = await event_rate(daemon, reader, total)
        assert daemon.proc is not None
        rss = rss_mb(daemon.proc.pid)
        scrape_s = await asyncio.to_thread(scrape_seconds, daemon)
        await asyncio.to_thread(reload_seconds, daemon)
        reload_s = reload_took(daemon)
    finally:
        await reader.stop()
        daemon.stop()
    return Figures(ready_s, rss, reload_s, scrape_s, rate)


async def three_instances(
    folder: Path, bootstrap: str, redis_url: str, shops: dict[str, str]
) -> tuple[float, list[float]]:
    """(seconds until all three are ready, RSS MiB of each)."""
    topics = unique_topics()
    await create_topics(bootstrap, topics, partitions=PARTITIONS)
    daemons = []
    for i in range(3):
        (folder / f"i{i}").mkdir(parents=True)
        config = write_config(
            folder / f"i{i}", bootstrap=bootstrap, redis_url=redis_url, topics=topics,
            shops=shops,
        )  # fmt: skip
        daemons.append(DaemonProcess(config))
    started = time.monotonic()
    try:
        await asyncio.gather(*(asyncio.to_thread(d.start, 180.0) for d in daemons))
        ready_s = time.monotonic() - started
        rss = [rss_mb(d.proc.pid) for d in daemons if d.proc is not None]
    finally:
        for daemon in daemons:
            daemon.stop()
    return ready_s, rss


async def main(count: int, total: int) -> int:
    say(f"fenliu fleet bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    say(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    say(f"command: .venv/bin/python bench/fleet.py --shops {count} --events {total}")
    many = shop_files(count)
    bigs = sum(1 for s in many if s.startswith("big-"))
    say(f"{count} shops: {bigs} like big.toml, the rest like small.toml (one gets the events)")
    with Broker() as broker, RedisServer() as redis, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        alone = {SHOP: many[SHOP]}
        runs: dict[str, list[Figures]] = {"one": [], "all": []}
        for round_ in (1, 2):  # alternated, so both see the same machine
            for name, shops in (("one", alone), ("all", many)):
                say(f"round {round_}: one instance, {len(shops)} shop(s) ...")
                folder_n = folder / f"{name}{round_}"
                runs[name].append(
                    await one_instance(folder_n, broker.bootstrap, redis.url, shops, total)
                )
                say(str(runs[name][-1]))
        one = max(runs["one"], key=lambda f: f.rate)
        all_ = max(runs["all"], key=lambda f: f.rate)
        per_shop_kib = (all_.rss_mb - one.rss_mb) * 1024 / max(count - 1, 1)
        say(f"  RSS per shop: {per_shop_kib:.1f} KiB")
        say(f"three instances sharing all {count} shops ...")
        ready3, rss3 = await three_instances(folder / "three", broker.bootstrap, redis.url, many)
        say(f"  all ready {ready3:.2f}s, RSS {', '.join(f'{r:.0f}' for r in rss3)} MiB")
    say(f"best rates: 1 shop {one.rate:,.0f} events/s, {count} shops {all_.rate:,.0f} events/s")
    say(f"ratio event cost {count} shops / 1 shop = {one.rate / all_.rate:.2f}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shops", type=int, default=3000, help="shop files (default 3000)")
    parser.add_argument("--events", type=int, default=60000, help="events replayed")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.shops, args.events)))
