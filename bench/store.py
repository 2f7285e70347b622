"""Checkpoint benchmark: restoring a big shop from Redis, its memory, and per-batch cost.

    .venv/bin/python bench/store.py [--rounds N] [--repeats N]

Starts a throw-away redis-server on a free loopback port. The shop is bench/core.py's
200-agent shop (four groups, queueing on) with every agent's cap raised to 50, sessions that
time out after an hour and queued buyers who never expire, so the state stays put while it
is measured. It is built by driving a tracking engine with inquiries: every group is fed its
own inquiries until one queues (every agent at cap: 10,000 sessions), then 5,000 more buyers
queue. In one run:

1. restore — the state is checkpointed with `Store.save_shops` (as the delta of a tracking
   engine), then timed: the same reads on a bare socket (Redis alone) and through redis-py,
   `Store.claim_shops`, `Engine.restore_shop`, and the whole `Checkpoint.restore` path (target
   ≤ 2 s). Every restored shop's snapshot must equal the original's, or the bench fails.
2. memory — tracemalloc: what the engine allocates per open session and per queued buyer.
3. per batch — batches of 100, 500 and 2,000 events of a made-up mix (in-session chat 80%,
   new inquiries 9% that queue, queued buyers leaving 9%, orders, agent stats, suspensions
   and shifts ending; 1,000 events per virtual second) are applied in turn; each batch's
   checkpoint (`take_deltas` + `Store.save_shops` with its outbox + the partition's
   watermark, as the daemon writes them) is timed, and so is saving its
   outbox alone; they compare with a full dump (`dump_shop` + `orjson.dumps` + one SET) of
   the same shop. Batches in which a queue tick fired (every 10 s of virtual time) rewrite
   the row of every queued buyer whose position moved; they make the p99.

Machine noise matters: quote figures from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import CONTEXTS, SEED, SHOP, T0, machine, mix_shop

from daemon.config import TopicsConfig
from daemon.core.config import ShopConfig
from daemon.core.dedup import RecentIds
from daemon.core.engine import Engine, EventRejected, ShopDelta
from daemon.core.snapshot import dump_shop
from daemon.dev.stack import RedisServer
from daemon.service.checkpoint import Checkpoint
from daemon.service.kafka import TopicMap
from daemon.service.store import OutboxRecord, Owned, PartitionCheckpoint, ShopCheckpoint, Store
from topics.codec import encode
from topics.events import (
    AgentStatsReported,
    AgentStatus,
    AgentStatusChanged,
    BuyerInquired,
    BuyerLeft,
    InputEvent,
    InquiryContext,
    MessageSent,
    OrderPlaced,
    OutputEvent,
    QueueStatus,
    QueueUpdate,
)

CAP = 50
SESSIONS = 200 * CAP
QUEUED = 5_000
EVENT_MS = 1  # virtual time between events: 1,000 events/s
BATCH_SIZES = (100, 500, 2000)
PREFIX = "bench"
TOPIC = "fenliu.inquiries"  # offsets are written per topic; one is enough here
KEY = SHOP.encode()
TOPICS = TopicMap(TopicsConfig())
PROBE = "outbox-probe"  # scratch shop id for timing an outbox on its own
WAITING = QueueStatus.WAITING

# (kind, share of events) of the per-batch mix
MIX: tuple[tuple[str, float], ...] = (
    ("buyer_message", 0.40),
    ("agent_message", 0.40),
    ("inquiry", 0.09),
    ("leave", 0.09),
    ("order", 0.017),
    ("stats", 0.0015),
    ("away", 0.0015),
)

Timed = tuple[int, InputEvent]


def say(text: str) -> None:
    """Progress and results, printed at once."""
    print(text, flush=True)


def big_shop() -> ShopConfig:
    """bench/core.py's shop with caps of 50, hour-long sessions and no queue expiry."""
    base = mix_shop()
    queue = base.queue.model_copy(update={"default_cap": CAP, "session_timeout": 3_600_000})
    queue = queue.model_copy(update={"max_wait": 0})
    agents = tuple(a.model_copy(update={"cap": None}) for a in base.agents)
    return base.model_copy(update={"queue": queue, "agents": agents})


def counts(engine: Engine) -> tuple[int, int, int]:
    """Open sessions, queued buyers and buyer rows of the shop."""
    shop = engine.shop(SHOP)
    sessions = sum(len(a.sessions) for a in shop.agents.values())
    queued = sum(1 for b in shop.buyers.values() if b.queued is not None)
    return sessions, queued, len(shop.buyers)


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of the values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# ---------------------------------------------------------------------------- traffic


@dataclass
class Driver:
    """Feeds one shop's engine with made-up traffic; owns the virtual clock and the ids."""

    engine: Engine
    rng: random.Random
    now: int = T0
    ids: int = 0
    status: dict[str, AgentStatus] = field(default_factory=dict)
    returns: list[tuple[int, str]] = field(default_factory=list)  # (when, agent) heap

    def next_id(self, prefix: str) -> str:
        """A fresh id."""
        self.ids += 1
        return f"{prefix}{self.ids}"

    def feed(self, event: InputEvent) -> list[OutputEvent]:
        """Apply one event one tick after the previous one."""
        self.now += EVENT_MS
        return self.engine.handle(event, self.now)

    def staff(self) -> None:
        """Every agent comes online."""
        for agent in self.engine.configs[SHOP].agents:
            self.status[agent.id] = AgentStatus.ONLINE
            online = AgentStatus.ONLINE
            self.feed(AgentStatusChanged(self.next_id("s"), SHOP, self.now, agent.id, online))

    def inquiry(self, context: InquiryContext) -> BuyerInquired:
        """A new buyer's inquiry."""
        priority = 1 if "vip" in context.crowd else 0
        return BuyerInquired(
            self.next_id("i"), SHOP, self.now + EVENT_MS, self.next_id("b"), context, priority
        )

    def context(self) -> InquiryContext:
        """A context drawn from bench/core.py's shares."""
        shares = [share for share, _ in CONTEXTS]
        return self.rng.choices([c for _, c in CONTEXTS], shares)[0]

    def fill(self) -> None:
        """Feed each group its own inquiries until one queues: every agent is at cap."""
        open_contexts = list(CONTEXTS)
        while open_contexts:
            pick = self.rng.choices(open_contexts, [s for s, _ in open_contexts])[0]
            out = self.feed(self.inquiry(pick[1]))
            if any(isinstance(o, QueueUpdate) and o.status is QueueStatus.QUEUED for o in out):
                open_contexts.remove(pick)

    def queue(self, count: int) -> None:
        """`count` inquiries with the usual contexts (they queue once agents are full)."""
        for _ in range(count):
            self.feed(self.inquiry(self.context()))

    def build(self) -> None:
        """Staff the shop, fill every agent, then queue up to QUEUED buyers."""
        self.staff()
        self.fill()
        self.queue(QUEUED - counts(self.engine)[1])


@dataclass
class Mix:
    """Draws batches of the per-batch mix from the shop's current state."""

    driver: Driver
    sessions: list[tuple[str, str]] = field(default_factory=list)  # (buyer, agent)
    queued: list[str] = field(default_factory=list)

    def batch(self, size: int) -> list[Timed]:
        """`size` events, stamped one tick apart after the driver's clock."""
        d = self.driver
        shop = d.engine.shop(SHOP)
        self.sessions = [(b.id, b.session.agent_id) for b in shop.buyers.values() if b.session]
        self.queued = [b.id for b in shop.buyers.values() if b.queued is not None]
        d.rng.shuffle(self.queued)
        kinds = d.rng.choices([k for k, _ in MIX], [s for _, s in MIX], k=size)
        makers: dict[str, Callable[[int], InputEvent]] = {
            "buyer_message": self.buyer_message,
            "agent_message": self.agent_message,
            "inquiry": self.new_inquiry,
            "leave": self.leave,
            "order": self.order,
            "stats": self.stats,
            "away": self.away,
        }
        events: list[Timed] = []
        for i, kind in enumerate(kinds, start=1):
            t = d.now + i * EVENT_MS
            if d.returns and d.returns[0][0] <= t:
                agent_id = heapq.heappop(d.returns)[1]
                d.status[agent_id] = AgentStatus.ONLINE
                back = AgentStatusChanged(d.next_id("s"), SHOP, t, agent_id, AgentStatus.ONLINE)
                events.append((t, back))
            else:
                events.append((t, makers[kind](t)))
        return events

    def buyer_message(self, t: int) -> InputEvent:
        """A buyer in a session writes."""
        buyer_id, _ = self.driver.rng.choice(self.sessions)
        return MessageSent(self.driver.next_id("m"), SHOP, t, buyer_id, "buyer")

    def agent_message(self, t: int) -> InputEvent:
        """An agent answers one of its buyers."""
        buyer_id, agent_id = self.driver.rng.choice(self.sessions)
        return MessageSent(self.driver.next_id("m"), SHOP, t, buyer_id, "agent", agent_id)

    def new_inquiry(self, t: int) -> InputEvent:
        """A new buyer asks (and queues: every agent is at cap)."""
        d = self.driver
        context = d.context()
        priority = 1 if "vip" in context.crowd else 0
        return BuyerInquired(d.next_id("i"), SHOP, t, d.next_id("b"), context, priority)

    def leave(self, t: int) -> InputEvent:
        """A queued buyer gives up (each at most once)."""
        if not self.queued:
            return self.buyer_message(t)
        return BuyerLeft(self.driver.next_id("l"), SHOP, t, self.queued.pop())

    def order(self, t: int) -> InputEvent:
        """A buyer in a session orders."""
        buyer_id, _ = self.driver.rng.choice(self.sessions)
        amount = round(self.driver.rng.uniform(20, 800), 2)
        return OrderPlaced(self.driver.next_id("o"), SHOP, t, buyer_id, amount)

    def stats(self, t: int) -> InputEvent:
        """New conversion figures for an agent."""
        d = self.driver
        agent_id = d.rng.choice(list(d.status))
        rate = round(d.rng.uniform(0.02, 0.35), 3)
        return AgentStatsReported(d.next_id("x"), SHOP, t, agent_id, rate)

    def away(self, t: int) -> InputEvent:
        """An online agent is suspended for a while (90%) or ends its shift (closing its
        sessions) and is back five minutes later."""
        d = self.driver
        agent_id = d.rng.choice(list(d.status))
        if d.status[agent_id] is not AgentStatus.ONLINE:
            return self.stats(t)
        offline = d.rng.random() < 0.1
        status = AgentStatus.OFFLINE if offline else AgentStatus.SUSPENDED
        back_ms = 300_000 if offline else round(d.rng.uniform(20_000, 120_000))
        d.status[agent_id] = status
        heapq.heappush(d.returns, (t + back_ms, agent_id))
        return AgentStatusChanged(d.next_id("s"), SHOP, t, agent_id, status)


# ---------------------------------------------------------------------------- restore


def started() -> float:
    """A timer's start, after a full collection (so no earlier garbage is billed)."""
    gc.collect()
    return time.perf_counter()


class Writer:
    """Writes checkpoints as the daemon does: as the claimed owner of the shop and of its
    partition, the shop first, then the partition's watermark (two round trips)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.shops: dict[str, Owned] = {}
        self.partition = Owned(0, 0)

    async def claim(self, *shops: str) -> None:
        """Own these shops and partition 0 again (a restore in between fenced us)."""
        for shop_id, stored in (await self.store.claim_shops(shops)).items():
            assert not isinstance(stored, Exception), stored
            self.shops[shop_id] = Owned(stored.epoch, 0)
        claimed = (await self.store.claim_partitions([0]))[0]
        assert not isinstance(claimed, Exception), claimed
        self.partition = Owned(claimed.epoch, 0)

    async def save(self, shop_id: str, cp: ShopCheckpoint, offset: int | None) -> None:
        owned = self.shops[shop_id] = Owned(self.shops[shop_id].epoch, self.shops[shop_id].seq + 1)
        outcome = await self.store.save_shops({shop_id: (owned, cp)})
        assert outcome[shop_id] == "ok", outcome
        if offset is not None:
            self.partition = Owned(self.partition.epoch, self.partition.seq + 1)
            mark = PartitionCheckpoint({TOPIC: offset}, [], {TOPIC: offset})
            assert (await self.store.save_partitions({0: (self.partition, mark)}))[0] == "ok"

    async def acknowledged(self, shop_id: str) -> None:
        await self.store.clear_outboxes({shop_id: self.shops[shop_id].epoch}, {})


async def raw_fetch(store: Store) -> list[Any]:
    """The reads of a shop's claim without decoding anything."""
    pipe = store.client.pipeline(transaction=False)
    for part in ("meta", "agents", "buyers"):
        pipe.hgetall(store.key(SHOP, part))
    for part in ("seen", "outbox"):
        pipe.lrange(store.key(SHOP, part), 0, -1)
    return list(await pipe.execute())


async def socket_fetch(store: Store) -> int:
    """The same reads on a bare socket, replies left unparsed: what Redis itself costs.
    Returns the bytes read."""
    kwargs = store.client.connection_pool.connection_kwargs
    reader, writer = await asyncio.open_connection(kwargs["host"], kwargs["port"])
    commands: list[tuple[str, ...]] = [
        ("HGETALL", store.key(SHOP, p)) for p in ("meta", "agents", "buyers")
    ]
    commands += [("LRANGE", store.key(SHOP, p), "0", "-1") for p in ("seen", "outbox")]
    commands.append(("PING",))
    wire = b"".join(
        f"*{len(c)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in c)
        for c in commands
    )
    writer.write(wire)
    got = bytearray()
    while not got.endswith(b"+PONG\r\n"):
        got += await reader.read(1 << 20)
    writer.close()
    await writer.wait_closed()
    return len(got)


async def restore_once(
    store: Store, config: ShopConfig, original: dict[str, Any]
) -> dict[str, float]:
    """Seconds of each restore stage, once; asserts the restored shop equals the original."""
    laps: dict[str, float] = {}
    start = started()
    await socket_fetch(store)
    laps["socket"] = time.perf_counter() - start
    start = started()
    await raw_fetch(store)
    laps["fetch"] = time.perf_counter() - start
    start = started()
    stored = (await store.claim_shops([SHOP]))[SHOP]
    laps["load"] = time.perf_counter() - start
    assert not isinstance(stored, Exception), stored
    snapshot = stored.snapshot
    assert snapshot is not None, "Redis holds no snapshot of the shop"
    engine = Engine({SHOP: config}, track=True)
    start = started()
    engine.restore_shop(SHOP, snapshot)
    laps["restore_shop"] = time.perf_counter() - start
    assert engine.snapshot_shop(SHOP) == original, "restore_shop changed the shop"
    checkpoint = Checkpoint(Engine({SHOP: config}, track=True), store)
    start = started()
    restored = await checkpoint.restore([0], 1)
    laps["total"] = time.perf_counter() - start
    assert restored.shops == 1, "Checkpoint.restore found no shop"
    assert checkpoint.engine.snapshot_shop(SHOP) == original, "Checkpoint.restore differs"
    return laps


async def bench_restore(
    store: Store, config: ShopConfig, original: dict[str, Any], repeats: int
) -> float:
    """Part 1: each stage of a restore, best and median of `repeats`, in ms.
    Returns the best time of the whole `Checkpoint.restore`, in seconds."""
    runs = [await restore_once(store, config, original) for _ in range(repeats)]
    best = {name: min(r[name] for r in runs) * 1000 for name in runs[0]}
    mid = {name: statistics.median(r[name] for r in runs) * 1000 for name in runs[0]}
    say(f"  best (median) of {repeats}, ms; each restored snapshot equals the original:")
    rows = (
        ("socket", "the 5 reads on a bare socket, unparsed"),
        ("fetch", "the 5 reads through redis-py, no orjson"),
        ("load", "Store.claim_shops (fetch + orjson of rows)"),
        ("restore_shop", "Engine.restore_shop (load_shop)"),
        ("total", "Checkpoint.restore, the whole path"),
    )
    for name, label in rows:
        say(f"    {label:<40} {best[name]:8.1f}  ({mid[name]:.1f})")
    say(f"    target ≤ 2000 ms: {'met' if best['total'] <= 2000 else 'MISSED'}")
    return best["total"] / 1000


# ---------------------------------------------------------------------------- memory


def traced() -> int:
    """Bytes tracemalloc sees allocated now, after a full collection."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def bench_memory(config: ShopConfig) -> tuple[float, float, float]:
    """Part 2: bytes per open session, per queued buyer, and per id in the dedup window."""
    tracemalloc.start()
    try:
        driver = Driver(Engine({SHOP: config}, track=True), random.Random(SEED + 1))
        driver.staff()
        driver.engine.take_deltas()
        base = traced()
        driver.fill()
        driver.engine.take_deltas()
        full = traced()
        sessions, queued_at_full, _ = counts(driver.engine)
        driver.queue(QUEUED - queued_at_full)
        driver.engine.take_deltas()
        queued_mem = traced()
        queued = counts(driver.engine)[1]
        del driver
        ids = [f"i{n}" for n in range(SESSIONS)]
        before = traced()
        window = RecentIds(100_000, ids)
        id_bytes = (traced() - before) / len(ids)
        del window
    finally:
        tracemalloc.stop()
    per_queued = (queued_mem - full) / (queued - queued_at_full)
    per_session = (full - base - queued_at_full * per_queued) / sessions
    say(
        f"  {sessions:,} sessions: {(full - base) / 1e6:.1f} MB; then {queued:,} queued: "
        f"+{(queued_mem - full) / 1e6:.1f} MB"
    )
    say(f"  per open session  {per_session:6.0f} B")
    say(f"  per queued buyer  {per_queued:6.0f} B")
    say(f"  (each includes its inquiry's id in the dedup window, {id_bytes:.0f} B per id)")
    return per_session, per_queued, id_bytes


# ---------------------------------------------------------------------------- batches


@dataclass
class BatchRuns:
    """What the checkpoints of one batch size cost."""

    size: int
    take_ms: list[float] = field(default_factory=list)
    save_ms: list[float] = field(default_factory=list)  # take_deltas + Store.save
    handle_ms: list[float] = field(default_factory=list)
    outbox_ms: list[float] = field(default_factory=list)  # the outbox saved on its own
    rows: list[int] = field(default_factory=list)
    row_bytes: list[int] = field(default_factory=list)
    outbox: list[int] = field(default_factory=list)
    ticks: int = 0  # batches in which a queue tick re-published positions


def delta_size(delta: ShopDelta | None) -> tuple[int, int]:
    """Rows in a delta and their JSON bytes."""
    if delta is None:
        return 0, 0
    rows = [r for r in (*delta.agents.values(), *delta.buyers.values()) if r is not None]
    return len(delta.agents) + len(delta.buyers), sum(len(orjson.dumps(r)) for r in rows)


def apply_batch(mix: Mix, size: int) -> tuple[list[Timed], list[OutputEvent], float]:
    """Draw and apply one batch as the daemon does (timers that came due fire at its end).
    Returns the events, the outputs and the seconds the engine took."""
    driver, engine = mix.driver, mix.driver.engine
    events = mix.batch(size)
    outputs: list[OutputEvent] = []
    start = time.perf_counter()
    for t, event in events:
        try:
            outputs.extend(engine.handle(event, t))
        except EventRejected as rejected:
            raise AssertionError(f"the mix made a bad event: {rejected}") from rejected
    driver.now = events[-1][0]
    deadline = engine.next_deadline()
    if deadline is not None and deadline <= driver.now:
        outputs.extend(engine.on_timer(driver.now))
    return events, outputs, time.perf_counter() - start


async def outbox_alone(writer: Writer, outbox: list[OutboxRecord]) -> float:
    """Milliseconds to save only this outbox (under a scratch shop), for comparison."""
    await writer.claim(PROBE)
    start = started()
    await writer.save(PROBE, ShopCheckpoint(None, {}, outbox), None)
    seconds = time.perf_counter() - start
    store = writer.store
    await store.client.delete(store.key(PROBE, "meta"), store.key(PROBE, "outbox"))
    return seconds * 1000


async def one_batch(mix: Mix, writer: Writer, runs: BatchRuns, offset: int) -> int:
    """Apply one batch, then time its checkpoint; return the new input offset."""
    events, outputs, handle_s = apply_batch(mix, runs.size)
    runs.handle_ms.append(handle_s * 1000)
    outbox = [OutboxRecord(TOPICS.output_topic(o), KEY, encode(o)) for o in outputs]
    offset += len(events)
    start = started()
    delta = mix.driver.engine.take_deltas().get(SHOP)
    taken = time.perf_counter()
    shop = ShopCheckpoint(delta, {TOPIC: offset}, outbox)
    await writer.save(SHOP, shop, offset)
    end = time.perf_counter()
    await writer.acknowledged(SHOP)  # Kafka acknowledged them
    runs.take_ms.append((taken - start) * 1000)
    runs.save_ms.append((end - start) * 1000)
    runs.outbox_ms.append(await outbox_alone(writer, outbox))
    rows, size = delta_size(delta)
    runs.rows.append(rows)
    runs.row_bytes.append(size)
    runs.outbox.append(len(outbox))
    runs.ticks += any(isinstance(o, QueueUpdate) and o.status is WAITING for o in outputs)
    return offset


async def full_dump(engine: Engine, store: Store, repeats: int) -> tuple[list[float], int]:
    """Milliseconds of dump_shop + orjson.dumps + one SET, per repetition; the blob's size."""
    key, size = store.key(SHOP, "full"), 0
    runs: list[float] = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        blob = orjson.dumps(dump_shop(engine.shop(SHOP)))
        await store.client.set(key, blob)
        runs.append((time.perf_counter() - start) * 1000)
        size = len(blob)
    await store.client.delete(key)
    return runs, size


def report_batches(all_runs: list[BatchRuns]) -> None:
    """Two tables: what each batch size's checkpoint costs, and what it writes."""
    say(
        "  checkpoint = take_deltas + Store.save_shops (changed rows, new ids, offsets, "
        "outbox) + Store.save_partitions (watermark)"
    )
    say("  events  p50 ms  p99 ms  max ms  µs/event  take_deltas  outbox alone  engine µs/event")
    for r in all_runs:
        p50 = pct(r.save_ms, 50)
        say(
            f"  {r.size:>6} {p50:7.2f} {pct(r.save_ms, 99):7.2f} {max(r.save_ms):7.2f} "
            f"{p50 * 1000 / r.size:9.1f} {pct(r.take_ms, 50):9.2f} ms "
            f"{pct(r.outbox_ms, 50):9.2f} ms {pct(r.handle_ms, 50) * 1000 / r.size:12.1f}"
        )
    say("  events  rows p50  rows max  row KB p50  outbox p50  outbox max  batches with a tick")
    for r in all_runs:
        say(
            f"  {r.size:>6} {pct(r.rows, 50):9.0f} {max(r.rows):9,} "
            f"{pct(r.row_bytes, 50) / 1000:11.0f} {pct(r.outbox, 50):11.0f} "
            f"{max(r.outbox):11,} {r.ticks:>14}/{len(r.rows)}"
        )
    say("  (rows: agent and buyer rows written; a tick re-publishes every moved queue position)")


async def bench_batches(driver: Driver, store: Store, offset: int, rounds: int) -> list[BatchRuns]:
    """Part 3: per-batch checkpoint cost by batch size (sizes take turns)."""
    mix = Mix(driver)
    writer = Writer(store)
    await writer.claim(SHOP)
    all_runs = [BatchRuns(size) for size in BATCH_SIZES]
    for _ in range(rounds):
        for runs in all_runs:
            offset = await one_batch(mix, writer, runs, offset)
    sessions, queued, rows = counts(driver.engine)
    say(
        f"  {rounds} batches per size; shop afterwards: {sessions:,} sessions, "
        f"{queued:,} queued, {rows:,} buyer rows"
    )
    report_batches(all_runs)
    return all_runs


# ---------------------------------------------------------------------------- main


async def build_and_save(store: Store, config: ShopConfig) -> tuple[Driver, int]:
    """Build the big shop on a tracking engine and checkpoint it; return the driver and
    the input offset written."""
    driver = Driver(Engine({SHOP: config}, track=True), random.Random(SEED))
    start = time.perf_counter()
    driver.build()
    built = time.perf_counter() - start
    sessions, queued, rows = counts(driver.engine)
    seen = len(driver.engine.shop(SHOP).seen)
    say(
        f"  built in {built:.1f}s: {sessions:,} open sessions, {queued:,} queued buyers, "
        f"{rows:,} buyer rows, {seen:,} event ids"
    )
    assert (sessions, queued) == (SESSIONS, QUEUED), "the build missed its targets"
    offset = driver.ids
    start = started()
    delta = driver.engine.take_deltas()[SHOP]
    writer = Writer(store)
    await writer.claim(SHOP)
    await writer.save(SHOP, ShopCheckpoint(delta, {TOPIC: offset}), offset)
    seconds = time.perf_counter() - start
    say(f"  first checkpoint (every row, as one delta): {seconds * 1000:.0f} ms")
    return driver, offset


async def run(redis_url: str, rounds: int, repeats: int) -> list[str]:
    """The three parts against one Redis; returns the summary's lines."""
    config = big_shop()
    client = aioredis.Redis.from_url(redis_url, socket_timeout=30)
    store = Store(client, PREFIX, dedup_capacity=100_000)
    try:
        say(f"\n1. restore: one shop, {SESSIONS:,} sessions, {QUEUED:,} queued")
        driver, offset = await build_and_save(store, config)
        original = driver.engine.snapshot_shop(SHOP)
        # A restarting daemon holds no other shop state: keep the bench's own (the live
        # engine, the original snapshot) out of the collector's way while restores run.
        gc.collect()
        gc.freeze()
        total = await bench_restore(store, config, original, repeats)
        gc.unfreeze()
        del original
        say("\n2. memory (tracemalloc, engine allocations only)")
        per_session, per_queued, id_bytes = bench_memory(config)
        say("\n3. checkpoint per batch against a full dump of the same shop")
        dump_ms, dump_size = await full_dump(driver.engine, store, repeats)
        say(
            f"  full dump (dump_shop + orjson.dumps + SET of {dump_size / 1e6:.1f} MB): "
            f"best {min(dump_ms):.1f} ms, median {statistics.median(dump_ms):.1f} ms"
        )
        batches = await bench_batches(driver, store, offset, rounds)
    finally:
        await client.aclose()
    lines = [
        f"restore, one shop with {SESSIONS:,} open sessions + {QUEUED:,} queued buyers: "
        f"Checkpoint.restore {total * 1000:.0f} ms (best of {repeats}; target ≤ 2000 ms)",
        f"memory: {per_session:.0f} B per open session, {per_queued:.0f} B per queued buyer "
        f"(each incl. {id_bytes:.0f} B for its id in the dedup window)",
    ]
    for r in batches:
        p50 = pct(r.save_ms, 50)
        lines.append(
            f"checkpoint of a {r.size:>4}-event batch: p50 {p50:.2f} ms, "
            f"p99 {pct(r.save_ms, 99):.2f} ms, {p50 * 1000 / r.size:.1f} µs/event"
        )
    lines.append(
        f"full dump of the same shop instead: {statistics.median(dump_ms):.0f} ms per batch "
        f"({dump_size / 1e6:.1f} MB)"
    )
    return lines


async def main(rounds: int, repeats: int) -> int:
    """Start Redis, run the parts, print the summary block."""
    say(f"fenliu checkpoint benchmark — {machine()}")
    start = time.perf_counter()
    with RedisServer() as redis:
        say(f"redis-server on {redis.url}")
        summary = await run(redis.url, rounds, repeats)
    say(f"\ndone in {time.perf_counter() - start:.0f}s")
    say("\n--- for BENCHMARKS.md ---")
    say(f"command: .venv/bin/python bench/store.py --rounds {rounds} --repeats {repeats}")
    say(f"machine: {machine()}")
    for line in summary:
        say(line)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="batches per batch size")
    parser.add_argument("--repeats", type=int, default=5, help="timed restores and dumps")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.rounds, args.repeats)))
