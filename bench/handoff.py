"""Hand-off bench: how long a shop goes unrouted when an instance stops, and whose time it is.

    .venv/bin/python bench/handoff.py [--shops 3000] [--after 30]

Starts a Tansu broker and a redis-server on free loopback ports. For each scenario it runs
`fenliu run` instances with `--shops` shop files (bench/fleet.py's set) over six partitions
in one consumer group, and a probe: one shop per partition (queueing off, one agent online)
gets a new buyer's inquiry every 100 ms, and the probe times each inquiry until its
assignment arrives. After a few quiet seconds the scenario acts (t = 0):

    SIGTERM one of three     instance 0 stops cleanly and stays down
    SIGKILL one of three     instance 0 is killed and stays down
    restart a lone instance  the only instance is killed and started again at once

each without and with static membership (`[kafka] group_instance_id`). Per scenario:

- unrouted: the longest an inquiry of a moved partition waited (sent after t = -1 s);
- daemon: the new owner's own share — from its partition assignment until the first
  records of an owned partition (restore, then the first fetch: its `consuming` log line);
- broker: the rest (group coordination: noticing the stop, the JoinGroup hold, sync).

Prints a table. Machine noise matters: quote figures from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fleet import shop_files

from daemon.config import TopicsConfig
from daemon.dev.stack import Broker, RedisServer
from daemon.service.kafka import home_partition
from daemon.tools.topics_admin import create_topics
from tests.conftest import unique_topics
from tests.e2e import DaemonProcess, write_config

PARTITIONS = 6
PROBE_EVERY_S = 0.1
QUIET_S = 4.0  # probing before the scenario acts
AGENT = "xiaomei"  # an agent of config/shops/small.toml


def say(text: str) -> None:
    """Progress and results, printed at once."""
    print(text, flush=True)


@dataclass(frozen=True)
class Scenario:
    name: str
    instances: int
    action: str  # "term", "kill", "restart"
    static: bool


SCENARIOS = [
    Scenario(name, n, action, static)
    for static in (False, True)
    for name, n, action in (
        ("SIGTERM one of three", 3, "term"),
        ("SIGKILL one of three", 3, "kill"),
        ("restart a lone instance", 1, "restart"),
    )
]


@dataclass
class Result:
    unrouted_s: float
    daemon_s: float
    restore_s: float

    @property
    def broker_s(self) -> float:
        return max(0.0, self.unrouted_s - self.daemon_s)


def probe_shops(shops: dict[str, str]) -> dict[int, str]:
    """One small shop (queueing off) per partition: its home partition -> shop id."""
    found: dict[int, str] = {}
    for shop_id in shops:
        if shop_id.startswith("small-"):
            found.setdefault(home_partition(shop_id.encode(), PARTITIONS), shop_id)
        if len(found) == PARTITIONS:
            return found
    raise LookupError("not enough small shops to probe every partition")


class Probe:
    """Inquiries every 100 ms to one shop per partition; when each was answered."""

    def __init__(self, bootstrap: str, topics: TopicsConfig, shops: dict[int, str]) -> None:
        self.topics, self.shops = topics, shops
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        self.consumer = AIOKafkaConsumer(
            topics.assignments, bootstrap_servers=bootstrap, group_id=None,
            auto_offset_reset="earliest", fetch_max_wait_ms=10,
        )  # fmt: skip
        self.sent: dict[str, tuple[int, float]] = {}  # inquiry id -> (partition, when)
        self.answered: dict[str, float] = {}
        self.stopping = False
        self._n = 0

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        for shop in self.shops.values():
            await self._send(
                self.topics.agent_status,
                {"type": "agent_status", "agent_id": AGENT, "status": "online"},
                shop,
            )

    async def _send(self, topic: str, body: dict[str, object], shop: str) -> str:
        self._n += 1
        event_id = f"probe-{self._n}"
        value = {"id": event_id, "shop_id": shop, "ts": time.time_ns() // 1_000_000, **body}
        await self.producer.send(topic, orjson.dumps(value), key=shop.encode())
        return event_id

    async def run(self) -> None:
        """Send until `stopping`; collect answers meanwhile."""
        collector = asyncio.create_task(self._collect())
        try:
            while not self.stopping:
                for partition, shop in self.shops.items():
                    body = {"type": "inquiry", "buyer_id": f"buyer-{self._n}"}
                    event_id = await self._send(self.topics.inquiries, body, shop)
                    self.sent[event_id] = (partition, time.monotonic())
                await asyncio.sleep(PROBE_EVERY_S)
            await asyncio.sleep(1.0)
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector

    async def _collect(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            arrived = time.monotonic()
            for records in batch.values():
                for record in records:
                    inquiry = orjson.loads(record.value).get("inquiry_id")
                    if inquiry in self.sent and inquiry not in self.answered:
                        self.answered[inquiry] = arrived

    def longest_wait(self, partitions: set[int], since: float, end: float) -> float:
        """The longest wait of an inquiry to `partitions` sent after `since`."""
        waits = [
            self.answered.get(event_id, end) - sent
            for event_id, (partition, sent) in self.sent.items()
            if partition in partitions and sent >= since
        ]
        return max(waits, default=0.0)

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()


def log_events(daemon: DaemonProcess, name: str, after: float) -> list[dict[str, object]]:
    """The daemon's log events called `name` logged after epoch second `after`."""
    found = []
    for line in daemon.log_path.read_text().splitlines():
        if f'"{name}"' not in line:
            continue
        event = orjson.loads(line)
        stamp = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))
        if stamp.timestamp() >= after:
            found.append(event)
    return found


def owned_partitions(daemon: DaemonProcess) -> set[int]:
    """The partitions of the daemon's last restore."""
    restores = log_events(daemon, "restored", 0.0)
    return set(restores[-1]["partitions"]) if restores else set()  # type: ignore[arg-type]


async def run_scenario(
    scenario: Scenario, folder: Path, bootstrap: str, redis_url: str, shops: dict[str, str],
    after_s: float,
) -> Result:  # fmt: skip
    topics = unique_topics()
    await create_topics(bootstrap, topics, partitions=PARTITIONS)
    daemons = []
    for i in range(scenario.instances):
        extra = 'session_timeout = "6s"\n'
        if scenario.static:
            extra += f'group_instance_id = "fenliu-{i}"\n'
        config = write_config(
            folder / f"i{i}", bootstrap=bootstrap, redis_url=redis_url, topics=topics,
            shops=shops, group_id=f"{topics.inquiries}.g", kafka_extra=extra,
        )  # fmt: skip
        daemons.append(DaemonProcess(config))
    await asyncio.gather(*(asyncio.to_thread(d.start, 180.0) for d in daemons))
    probe = Probe(bootstrap, topics, probe_shops(shops))
    await probe.start()
    probing = asyncio.create_task(probe.run())
    try:
        deadline = time.monotonic() + 60  # steady: every partition owned once
        while sum(len(owned_partitions(d)) for d in daemons) < PARTITIONS:
            if time.monotonic() > deadline:
                raise TimeoutError("partitions not all owned within 60 s")
            await asyncio.sleep(0.5)
        await asyncio.sleep(QUIET_S)
        victim = daemons[0]
        moved = owned_partitions(victim)
        acted, acted_wall = time.monotonic(), time.time()
        if scenario.action == "term":
            await asyncio.to_thread(victim.stop)
        else:
            await asyncio.to_thread(victim.kill)
            if scenario.action == "restart":
                await asyncio.to_thread(victim.start, 180.0)
        await asyncio.sleep(max(0.0, after_s - (time.monotonic() - acted)))
    finally:
        probe.stopping = True
        await probing
        await probe.stop()
        for daemon in daemons:
            daemon.stop()
    unrouted = probe.longest_wait(moved, acted - 1.0, time.monotonic())
    consuming = [e for d in daemons for e in log_events(d, "consuming", acted_wall)]
    restored = [e for d in daemons for e in log_events(d, "restored", acted_wall)]
    return Result(
        unrouted,
        max((float(e["since_assigned_s"]) for e in consuming), default=0.0),  # type: ignore[arg-type]
        max((float(e["seconds"]) for e in restored), default=0.0),  # type: ignore[arg-type]
    )


async def main(count: int, after_s: float) -> int:
    say(f"fenliu hand-off bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    say(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    say(f"command: .venv/bin/python bench/handoff.py --shops {count} --after {after_s:g}")
    shops = shop_files(count)
    rows = []
    with Broker() as broker, RedisServer() as redis, tempfile.TemporaryDirectory() as tmp:
        for n, scenario in enumerate(SCENARIOS):
            static = "static" if scenario.static else "dynamic"
            say(f"{scenario.name}, {static} membership ...")
            folder = Path(tmp) / f"s{n}"
            result = await run_scenario(
                scenario, folder, broker.bootstrap, redis.url, shops, after_s
            )
            say(
                f"  unrouted {result.unrouted_s:.2f}s = broker {result.broker_s:.2f}s + daemon "
                f"{result.daemon_s:.2f}s (of which restore {result.restore_s:.2f}s)"
            )
            rows.append((scenario.name, static, result))
    say("")
    say("| event | membership | unrouted (s) | broker (s) | daemon (s) | restore (s) |")
    say("|---|---|---|---|---|---|")
    for name, static, r in rows:
        say(
            f"| {name} | {static} | {r.unrouted_s:.2f} | {r.broker_s:.2f} | {r.daemon_s:.2f} "
            f"| {r.restore_s:.2f} |"
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shops", type=int, default=3000, help="shop files (default 3000)")
    parser.add_argument("--after", type=float, default=30.0, help="seconds observed after")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.shops, args.after)))
