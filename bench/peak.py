"""Peak day through the engine: does an event cost the same with 5,000 buyers in line?

Run with ``.venv/bin/python bench/peak.py``. It prints its figures and asserts nothing.

A shop of 200 agents at cap 50. The same mix of events — 1 inquiry of a new buyer : 10
messages in open sessions, buyer and agent taking turns — is timed twice on the engine:

- normal: 9,000 sessions open, so every inquiry of the batch is routed (the batch brings
  the shop to 10,000);
- peak: every agent at its cap (10,000 sessions) and 5,000 buyers already queued, so every
  inquiry of the batch joins the line and is told its position and estimated wait.

Sessions time out after 10 minutes. Before the line is filled, LEAVERS buyers join it and
give up after 30 s, so the shop has learned that buyers leave (`daemon/core/patience.py`)
and every estimate asks the buyers ahead whether they will stay; nobody else gives up, so
nothing else happens while the batch runs. Each state is built afresh for each repetition
(best of REPEATS). The scenario runs for queueing scope `shop` (one group) and for scope
`groups` with three groups sharing every agent. Last line: `ratio peak/normal = X` for the
one-group shop (issue 12's target: >= 0.5 through the engine).

Then the same through the real daemon (`fenliu run` on a Tansu broker and a redis-server
started here, one partition): the state is built by producing the events that built it on
the engine, the daemon is paused with SIGSTOP while the batch and a marker inquiry behind
it are produced, and the rate is the batch over the time from SIGCONT until the marker's
answer arrives (best of REPEATS fresh daemons per state: one pause is a short window and
the broker's and the group's timing add noise). Last line: `ratio peak/normal = X` through
the daemon for the one-group shop (target >= 0.7). `--engine-only` skips the daemon part.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e import Daemon, events_in, ready, shop_toml, topics_named

from daemon.config import TopicsConfig
from daemon.core.config import ShopConfig
from daemon.core.engine import Engine
from daemon.dev.stack import Broker, RedisServer, write_daemon_config
from daemon.tools.topics_admin import create_topics
from topics.codec import encode
from topics.events import (
    AgentStatus,
    AgentStatusChanged,
    Assignment,
    BuyerInquired,
    BuyerLeft,
    InputEvent,
    InquiryContext,
    MessageSent,
    QueueStatus,
    QueueUpdate,
)

SHOP = "peak"
T0 = 1_700_000_000_000
AGENTS = 200
CAP = 50
QUEUED = 5_000
LEAVERS = 20  # buyers who give up before the line is filled (module docstring)
INQUIRIES = 1_000  # in the timed batch
MESSAGES_PER_INQUIRY = 10
REPEATS = 3


def say(text: str) -> None:
    """Print a line at once."""
    print(text, flush=True)


def shop_config(groups: int) -> ShopConfig:
    """200 agents at cap 50; `groups` groups that all list every agent."""
    ids = [f"a{i:03d}" for i in range(AGENTS)]
    names = [f"g{i}" for i in range(groups)]
    queue: dict[str, Any] = {
        "enabled": True,
        "default_cap": CAP,
        "session_timeout": "10m",
        "update_interval": "1h",  # no periodic waiting flush inside the timed batch
    }
    if groups > 1:
        queue |= {"scope": "groups", "groups": names}
    return ShopConfig.model_validate(
        {
            "id": SHOP,
            "agents": [{"id": a} for a in ids],
            "groups": [
                {"name": name, "agents": ids, "match": {"intents": [name]}} for name in names
            ],
            "queue": queue,
        }
    )


class Rig:
    """Builds a shop in a given state, then the batch to time on it."""

    def __init__(self, config: ShopConfig, t0: int = T0) -> None:
        self.engine = Engine({SHOP: config})
        self.intents = [g.name for g in config.groups]  # inquiries take turns among groups
        self.now = t0
        self.fed: list[InputEvent] = []  # every event that built the state, in order
        self.ids = 0
        self.open: list[tuple[str, str]] = []  # (buyer, agent) of open sessions, in order
        self.queued = 0
        self.waiting: list[str] = []  # buyers queued, in order
        for agent in config.agents:
            self.feed(
                AgentStatusChanged(self.next("s"), SHOP, self.now, agent.id, AgentStatus.ONLINE)
            )

    def next(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}{self.ids}"

    def feed(self, event: InputEvent) -> None:
        self.fed.append(event)
        for out in self.engine.handle(event, self.now):
            if isinstance(out, Assignment):
                self.open.append((out.buyer_id, out.agent_id))
            elif isinstance(out, QueueUpdate) and out.status is QueueStatus.QUEUED:
                self.queued += 1
                self.waiting.append(out.buyer_id)

    def inquiry(self) -> BuyerInquired:
        intent = self.intents[self.ids % len(self.intents)]
        context = InquiryContext(intent=intent)
        return BuyerInquired(self.next("i"), SHOP, self.now, self.next("b"), context)

    def fill(self, sessions: int, queued: int) -> None:
        """Open `sessions` sessions (each greeted by its agent), then queue `queued` buyers."""
        while len(self.open) < sessions:
            self.now += 1
            self.feed(self.inquiry())
        for buyer, agent in self.open:
            self.feed(MessageSent(self.next("m"), SHOP, self.now, buyer, "agent", agent))
        if queued:  # a few give up first: the shop learns that buyers leave
            while self.queued < LEAVERS:
                self.now += 1
                self.feed(self.inquiry())
            self.now += 30_000
            for buyer in self.waiting[:LEAVERS]:
                self.feed(BuyerLeft(self.next("l"), SHOP, self.now, buyer))
            self.queued -= LEAVERS
        while self.queued < queued:
            self.now += 1
            self.feed(self.inquiry())

    def batch(self) -> list[InputEvent]:
        """1 inquiry : 10 messages, the messages in open sessions, buyer and agent in turn."""
        events: list[InputEvent] = []
        k = 0
        for _ in range(INQUIRIES):
            events.append(self.inquiry())
            for _ in range(MESSAGES_PER_INQUIRY):
                buyer, agent = self.open[k % len(self.open)]
                sender = "buyer" if (k // len(self.open)) % 2 == 0 else "agent"
                events.append(MessageSent(self.next("m"), SHOP, self.now, buyer, sender, agent))
                k += 1
        return events

    def time(self, events: list[InputEvent]) -> float:
        """Seconds to handle the batch, 1 ms of virtual time per event."""
        handle, now = self.engine.handle, self.now
        gc.collect()
        start = time.perf_counter()
        for event in events:
            now += 1
            handle(event, now)
        return time.perf_counter() - start


def rate(groups: int, sessions: int, queued: int) -> float:
    """Best events/s over REPEATS fresh rigs in the given state."""
    best = 0.0
    for _ in range(REPEATS):
        rig = Rig(shop_config(groups))
        rig.fill(sessions, queued)
        events = rig.batch()
        best = max(best, len(events) / rig.time(events))
    return best


# ------------------------------------------------------------------- through the daemon


def _topic(topics: TopicsConfig, event: InputEvent) -> str:
    if isinstance(event, BuyerInquired):
        return topics.inquiries
    return topics.messages if isinstance(event, MessageSent) else topics.agent_status


async def _produce(bootstrap: str, topics: TopicsConfig, events: list[InputEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    await producer.start()
    try:
        sends = [
            await producer.send(_topic(topics, ev), encode(ev), key=SHOP.encode()) for ev in events
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def _until(check: Any, what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the daemon did not get to {what} in {seconds:.0f} s")
        await asyncio.sleep(0.05)


async def daemon_rate(
    broker: Broker, redis: RedisServer, folder: Path, groups: int, sessions: int, queued: int
) -> float:
    """Events/s of `fenliu run` on the batch, from SIGCONT to the marker's answer."""
    topics = topics_named(f"peak{groups}-{sessions}-{queued}-{time.monotonic_ns()}")
    await create_topics(broker.bootstrap, topics, partitions=1)
    config = shop_config(groups)
    rig = Rig(config, t0=time.time_ns() // 1_000_000)
    rig.fill(sessions, queued)
    batch, marker = rig.batch(), rig.inquiry()
    daemon = Daemon(write_daemon_config(
        folder, bootstrap=broker.bootstrap, redis_url=redis.url,
        shops={SHOP: shop_toml(config)}, topics=topics, group_id=topics.inquiries,
        key_prefix=topics.inquiries,
    ))  # fmt: skip
    await daemon.start()
    assert daemon.proc is not None
    answers = AIOKafkaConsumer(
        topics.assignments, topics.queue_updates, bootstrap_servers=broker.bootstrap,
        group_id=None, auto_offset_reset="latest", fetch_max_wait_ms=5,
    )  # fmt: skip
    try:
        await _until(lambda: ready(daemon.http), "ready")
        await _produce(broker.bootstrap, topics, rig.fed)
        await _until(lambda: events_in(daemon.http) >= len(rig.fed), "the built state")
        await answers.start()
        await answers.getmany(timeout_ms=200)  # assigned, at the end of the topics
        os.kill(daemon.proc.pid, signal.SIGSTOP)
        try:
            await _produce(broker.bootstrap, topics, [*batch, marker])
        finally:
            start = time.perf_counter()
            os.kill(daemon.proc.pid, signal.SIGCONT)
        while True:
            got = await answers.getmany(timeout_ms=100)
            values = (orjson.loads(r.value) for rs in got.values() for r in rs)
            if any(v.get("inquiry_id") == marker.id for v in values):
                return (len(batch) + 1) / (time.perf_counter() - start)
            if time.perf_counter() - start > 120:
                raise TimeoutError("the marker was not answered in 120 s")
    finally:
        await answers.stop()
        await daemon.stop()


async def through_daemon() -> float:
    """Normal and peak through `fenliu run` for both shops (best of REPEATS fresh daemons,
    the states taking turns); the one-group ratio."""
    ratios = {}
    with Broker() as broker, RedisServer() as redis, tempfile.TemporaryDirectory() as tmp:
        for groups in (3, 1):
            label = "one group (scope shop)" if groups == 1 else f"{groups} groups sharing agents"
            normal = peak = 0.0
            for n in range(REPEATS):
                folder = Path(tmp) / f"{groups}-{n}"
                normal = max(normal, await daemon_rate(
                    broker, redis, folder / "normal", groups, AGENTS * CAP - INQUIRIES, 0
                ))  # fmt: skip
                peak = max(peak, await daemon_rate(
                    broker, redis, folder / "peak", groups, AGENTS * CAP, QUEUED
                ))  # fmt: skip
                say(f"  daemon, {label}: {n + 1}/{REPEATS} done")
            say(f"  daemon, {label}: normal {normal:,.0f} events/s")
            say(f"  daemon, {label}: peak   {peak:,.0f} events/s")
            ratios[groups] = peak / normal
            say(f"  daemon, {label}: ratio {ratios[groups]:.2f}")
    return ratios[1]


def main() -> int:
    """Both states, for one group and for three groups sharing agents."""
    say(f"fenliu peak-day benchmark: {AGENTS} agents at cap {CAP}, best of {REPEATS} (engine)")
    ratios = {}
    for groups in (3, 1):
        label = "one group (scope shop)" if groups == 1 else f"{groups} groups sharing agents"
        normal = rate(groups, AGENTS * CAP - INQUIRIES, 0)
        say(f"  engine, {label}: normal {normal:,.0f} events/s (9,000 sessions, inquiries routed)")
        peak = rate(groups, AGENTS * CAP, QUEUED)
        say(f"  engine, {label}: peak   {peak:,.0f} events/s (10,000 sessions, 5,000 queued)")
        ratios[groups] = peak / normal
        say(f"  engine, {label}: ratio {ratios[groups]:.2f}")
    say(f"engine ratio peak/normal = {ratios[1]:.2f}  (target >= 0.5)")
    if "--engine-only" in sys.argv[1:]:
        return 0
    daemon_ratio = asyncio.run(through_daemon())
    say(f"ratio peak/normal = {daemon_ratio:.2f}  (through the daemon; target >= 0.7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
