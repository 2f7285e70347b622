"""End-to-end benchmark: the daemon against a raw aiokafka ceiling on the same broker.

    .venv/bin/python bench/e2e.py [--events N]

Starts a Tansu broker and a redis-server on free loopback ports, records a realistic event
stream (the 200-agent mix of bench/core.py) and, in one run:

1. ceiling — a plain aiokafka loop consumes the stream in batches, `orjson.loads` and
   `orjson.dumps` each record and produces it to an output topic, committing per batch;
2. daemon — `fenliu run` (a real subprocess) consumes the same stream;
3. latency — a fresh daemon gets the stream paced at half the daemon's measured maximum
   rate; for every inquiry, the time from handing it to the producer until its first
   output (assignment or queue update) arrives.

Prints events/s for both, the ratio daemon / ceiling (target ≥ 0.6) and p50/p99 latency
(target p99 ≤ 50 ms). Machine noise matters: quote figures from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import SHOP, mix_shop, record_mix

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

Record = tuple[str, bytes, bytes, str, bool]  # (topic field, key, value, event id, inquiry?)
PARTITIONS = 4
REPO = Path(__file__).resolve().parents[1]
BATCH = 5000


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


def write_config(folder: Path, broker: Broker, redis: RedisServer, topics: TopicsConfig) -> Path:
    """fenliu.toml plus the shop file, in `folder`; each run its own Redis key prefix."""
    return write_daemon_config(
        folder, bootstrap=broker.bootstrap, redis_url=redis.url,
        shops={SHOP: shop_toml(mix_shop())}, topics=topics, group_id=topics.inquiries,
        key_prefix=topics.inquiries,
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


def events_in(http: str) -> int:
    """Records the daemon consumed so far, read from its /metrics."""
    try:
        with urllib.request.urlopen(f"http://{http}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return -1
    total = 0.0
    for line in text.splitlines():
        if line.startswith(("fenliu_events_in_total", 'fenliu_rejects_total{reason="invalid"')):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def ready(http: str) -> bool:
    """Whether the daemon answers /readyz with 200."""
    try:
        with urllib.request.urlopen(f"http://{http}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


class Daemon:
    """`fenliu run` as a subprocess."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.http = config.read_text().split('listen = "', 1)[1].split('"', 1)[0]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = (self.config.parent / "daemon.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon.cli", "run", "--config", str(self.config),
            stdout=log, stderr=log, cwd=REPO,
        )  # fmt: skip
        log.close()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 15)


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


async def daemon_rate(folder: Path, total: int) -> float:
    """Events/s of the daemon consuming the pre-produced stream."""
    daemon = Daemon(folder / "fenliu.toml")
    await daemon.start()
    first_at, first_count = 0.0, 0
    try:
        while True:
            count = events_in(daemon.http)
            now = time.perf_counter()
            if count > 0 and not first_at:
                first_at, first_count = now, count
            if count >= total:
                return (total - first_count) / (now - first_at)
            await asyncio.sleep(0.02)
    finally:
        await daemon.stop()


async def latency(
    folder: Path, bootstrap: str, topics: TopicsConfig, stream: list[Record], rate: float
) -> list[float]:
    """Inquiry → first output latencies (ms) with the stream paced at `rate` events/s."""
    daemon = Daemon(folder / "fenliu.toml")
    await daemon.start()
    while not ready(daemon.http):  # noqa: ASYNC110 (polling another process)
        await asyncio.sleep(0.1)  # joined its group, restored its partitions
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    consumer = AIOKafkaConsumer(
        topics.assignments, topics.queue_updates, bootstrap_servers=bootstrap,
        group_id=None, auto_offset_reset="latest", fetch_max_wait_ms=5,
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    await consumer.start()
    await producer.start()

    async def collect() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            arrived = time.perf_counter()
            for records in batch.values():
                for r in records:
                    inquiry = orjson.loads(r.value).get("inquiry_id")
                    if inquiry in sent and inquiry not in got:
                        got[inquiry] = arrived

    collector = asyncio.create_task(collect())
    try:
        tick = 0.005
        per_tick = max(1, round(rate * tick))
        start = time.perf_counter()
        for i in range(0, len(stream), per_tick):
            for field, key, value, event_id, is_inquiry in stream[i : i + per_tick]:
                if is_inquiry:
                    sent[event_id] = time.perf_counter()
                await producer.send(getattr(topics, field), value, key=key)
            delay = start + (i // per_tick + 1) * tick - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.sleep(2)
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        await daemon.stop()
    return sorted((got[k] - sent[k]) * 1000 for k in got)


def pct(values: list[float], p: float) -> float:
    """The p-th percentile of sorted values."""
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


async def main(total: int, forced_rate: float | None = None) -> int:
    say(f"fenliu e2e bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    say(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    say(f"recording {total} events of the 200-agent mix ...")
    stream = recorded_stream(total)
    total = len(stream)
    with Broker() as broker, RedisServer() as redis, tempfile.TemporaryDirectory() as tmp:
        main_topics = topics_named("bench")
        await create_topics(broker.bootstrap, main_topics, partitions=PARTITIONS)
        say(f"producing {total} records to {broker.bootstrap} ...")
        await produce_all(broker.bootstrap, main_topics, stream)
        say("ceiling: aiokafka consume → orjson loads/dumps → produce → commit ...")
        top = await ceiling(broker.bootstrap, main_topics, total)
        say(f"  ceiling   {top:10,.0f} events/s")
        say("daemon: fenliu run over the same records ...")
        folder = Path(tmp) / "daemon"
        write_config(folder, broker, redis, main_topics)
        rate = await daemon_rate(folder, total)
        say(f"  daemon    {rate:10,.0f} events/s")
        say(f"  ratio daemon / ceiling = {rate / top:.2f}  (target ≥ 0.6)")
        paced = forced_rate or rate / 2
        why = "as asked" if forced_rate else "half its maximum"
        say(f"latency: a fresh daemon fed at {paced:,.0f} events/s ({why}) ...")
        lat_topics = topics_named("lat")
        await create_topics(broker.bootstrap, lat_topics, partitions=PARTITIONS)
        lat_folder = Path(tmp) / "latency"
        write_config(lat_folder, broker, redis, lat_topics)
        lat = await latency(lat_folder, broker.bootstrap, lat_topics, stream, paced)
        say(
            f"  inquiry → output latency over {len(lat)} inquiries: p50 {pct(lat, 50):.1f} ms, "
            f"p99 {pct(lat, 99):.1f} ms, max {lat[-1] if lat else float('nan'):.1f} ms "
            "(target p99 ≤ 50 ms)"
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events in the stream")
    parser.add_argument("--rate", type=float, help="latency run's rate (default: half the max)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.events, args.rate)))
