"""A week without growth (issue 12, item 5): seven virtual days of `steady` traffic through one
engine, checkpointed to a real Redis as the daemon does; what the engine and Redis hold at
the end of each day.

    .venv/bin/python bench/week.py [--shop config/shops/big.toml] [--days 7] [--scale 1]
                                   [--seed 1]

The policy lab's `steady` day (daemon/lab/scenarios.py) is played `--days` days in a row
on the big example shop (30 agents in four groups, queueing on, the contract's windows:
sticky 72h, conversion 24h, repeat entry 30m), as configured: one `Engine` and one virtual
clock for the whole week, every timer firing at its deadline, buyers coming back across
days (`simulate(..., days=N)`), from an empty shop (`history="none"`: the week's growth is
what is measured). The engine is a tracking one with the daemon's default
dedup capacity (100,000 ids per shop). Like the daemon's loop, every virtual second in
which events arrived or timers fired ends with a checkpoint: `Checkpoint.save` (the
engine's `take_deltas`, `delta_ops`, the fenced write scripts of daemon/service/store.py)
with the outputs in the shop's outbox and the consumed offsets, then
`Checkpoint.acknowledged` empties the outbox as a Kafka acknowledgement would. A
throw-away redis-server is started on a free loopback port and stopped (its own process
group, by pid) at the end.

At the end of each virtual day it prints:

- events: input events handled so far; checkpoints written so far;
- engine MiB: the deep size of the engine — `sys.getsizeof` summed over every object
  reachable from the `Engine` (each counted once, after `gc.collect()`), leaving out the
  shop file's models, classes, functions and modules, which do not change;
- Redis keys and rows: the keys under the bench's prefix and their rows (hash fields,
  list entries, set / sorted set members, 1 per string), with the buyer rows and the seen
  ids among them, and Redis's `used_memory`;
- what the engine holds: buyers; sticky contacts (last contacts the sticky rule may still
  use, within `sticky_window`); conversion records (last contacts an order can still be
  credited to, within `conversion_window`); dedup ids; and `stale` — last contacts past
  every window plus idle buyers with nothing left to remember, which forgetting on time
  keeps at 0.

The last lines are `day7/day1 memory` and `day7/day1 redis rows` (target: at most 1.2);
before them, the same two ratios against day 5 (the day before the last two), once the
72-hour and 100,000-id windows have filled.
Prints its figures; asserts nothing. Machine noise matters little here (nothing is timed but
the run's wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.config import TopicsConfig, load_shop_file
from daemon.core.config import ShopConfig
from daemon.core.engine import DEFAULT_DEDUP_CAPACITY, Engine, EventRejected
from daemon.core.model import BuyerPhase
from daemon.core.shop import ShopEngine
from daemon.dev.stack import RedisServer
from daemon.lab.policy import parse_policy
from daemon.lab.runner import simulate
from daemon.lab.scenarios import HOUR_MS, find_scenario
from daemon.service.checkpoint import Checkpoint
from daemon.service.checkpoint_types import Batch
from daemon.service.kafka import TopicMap
from daemon.service.store import OutboxRecord, Store
from topics.codec import DEFAULT_TOPICS, EVENT_TYPES, encode, type_name
from topics.events import InputEvent, OutputEvent

REPO = Path(__file__).resolve().parents[1]
BIG = REPO / "config" / "shops" / "big.toml"
DAY_MS = 24 * HOUR_MS
BATCH_MS = 1000  # the daemon polls at most a second's records per batch
PARTITIONS = 4  # input partitions (`fenliu topics create`'s default); this instance owns all
PREFIX = "week"
TOPICS = TopicMap(TopicsConfig())
INPUT_TOPIC = {name: DEFAULT_TOPICS[kind] for kind, names in EVENT_TYPES.items() for name in names}


def say(text: str) -> None:
    """Progress and results, printed at once."""
    print(text, flush=True)


def machine() -> str:
    """Where and when the figures were taken."""
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC} | {platform.platform()} | "
        f"{platform.python_implementation()} {platform.python_version()} | "
        f"{os.cpu_count()} CPUs"
    )


# ------------------------------------------------------------------------------ figures


@dataclass(frozen=True, slots=True)
class DayFigures:
    """What the engine and Redis hold at the end of one virtual day."""

    day: int
    events: int  # input events handled since the start
    checkpoints: int  # checkpoints written since the start
    rejected: int  # events the engine refused since the start
    engine_bytes: int  # deep size of the engine (module docstring)
    redis_keys: int
    redis_rows: int
    redis_parts: dict[str, int]  # rows by the last part of the key (buyers, seen, ...)
    redis_memory: int  # Redis's used_memory, bytes
    buyers: int
    sticky: int
    conversion: int
    dedup: int
    stale: int


_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, Enum)


def _reachable(roots: Iterable[object], seen: set[int]) -> Iterator[object]:
    """Every object reachable from `roots` not in `seen` (ids; updated), classes,
    functions, modules and enum members left out."""
    stack = [r for r in roots if id(r) not in seen]
    seen.update(id(r) for r in stack)
    while stack:
        obj = stack.pop()
        yield obj
        for ref in gc.get_referents(obj):
            if id(ref) not in seen and not isinstance(ref, _SKIP):
                seen.add(id(ref))
                stack.append(ref)


def deep_size(engine: Engine) -> int:
    """Bytes of every object reachable from the engine, each once, without the shop files."""
    gc.collect()
    seen: set[int] = set()
    for _ in _reachable(list(engine.configs.values()), seen):
        pass  # the shop files' models: the same every day
    return sum(sys.getsizeof(obj) for obj in _reachable([engine], seen))


def held(shop: ShopEngine) -> tuple[int, int, int]:
    """Sticky contacts, conversion records and stale entries the shop holds now."""
    config, now = shop.config, shop.now
    keep = shop.sessions.keep_ms
    sticky = conversion = stale = 0
    for buyer in shop.buyers.values():
        last = buyer.last
        if last is None:
            stale += buyer.phase is BuyerPhase.IDLE  # nothing to remember, yet kept
            continue
        age = now - last.ended_at
        sticky += age < config.sticky_window
        conversion += age < config.conversion_window
        stale += age >= keep
    return sticky, conversion, stale


async def redis_rows(client: Any, prefix: str) -> tuple[int, int, dict[str, int], int]:
    """Keys under `prefix`, their rows, rows by the key's last part, and used_memory."""
    keys = rows = 0
    parts: dict[str, int] = {}
    async for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw.decode()
        kind = (await client.type(key)).decode()
        if kind == "hash":
            n = await client.hlen(key)
        elif kind == "list":
            n = await client.llen(key)
        elif kind == "zset":
            n = await client.zcard(key)
        elif kind == "set":
            n = await client.scard(key)
        else:
            n = 1
        keys += 1
        rows += n
        part = key.rsplit(":", 1)[-1]
        parts[part] = parts.get(part, 0) + n
    memory = int((await client.info("memory"))["used_memory"])
    return keys, rows, parts, memory


# ------------------------------------------------------------------------- the week


@dataclass
class Week:
    """The daemon's side of the week: batches, checkpoints, and a look at each day's end.

    `engine()` is the `make_engine` of `simulate`: a tracking engine that tells the week
    about every call, claimed in Redis as a starting daemon claims its partitions.
    """

    store: Store
    loop: asyncio.Runner
    start: int  # the scenario's start (epoch ms)
    days: int
    report: Callable[[DayFigures], None]
    figures: list[DayFigures] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    batch: Batch = field(default_factory=Batch)
    second: int = 0  # the virtual second the open batch belongs to
    dirty: bool = False  # the open batch has work (events, outputs or timers)
    offsets: dict[str, int] = field(default_factory=dict)  # input topic -> next offset
    events: int = 0
    checkpoints: int = 0
    rejected: int = 0

    def engine(self, shops: Mapping[str, ShopConfig]) -> Engine:
        """The engine the simulator drives; its partitions claimed in Redis."""
        engine = Engine(shops, track=True)
        self.checkpoint = Checkpoint(engine, self.store)
        self.loop.run(self.checkpoint.restore(range(PARTITIONS), PARTITIONS))
        return _WeekEngine(engine, self)  # type: ignore[return-value]

    def before(self, now: int) -> None:
        """A call at virtual time `now` is coming: close the batch of an earlier second,
        and look at the days that ended before it (all but the last, see `finish`)."""
        if now // BATCH_MS != self.second:
            self.flush()
            self.second = now // BATCH_MS
        ended = (now - self.start) // DAY_MS  # whole days before `now`
        while len(self.figures) < min(ended, self.days - 1):
            self.look()

    def consumed(self, event: InputEvent) -> None:
        """Note an input record, as the intake does (the offsets land in the checkpoint)."""
        assert self.checkpoint is not None
        topic = INPUT_TOPIC[type_name(event)]
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        part = self.checkpoint.held.home(event.shop_id)
        self.checkpoint.consumed(self.batch, event.shop_id, topic, part, offset)
        self.events += 1
        self.dirty = True

    def decided(self, outputs: list[OutputEvent]) -> None:
        """Put outputs in their shop's outbox, as the intake does; a timer call counts."""
        assert self.checkpoint is not None
        for event in outputs:
            key = event.shop_id.encode()
            record = OutboxRecord(TOPICS.output_topic(event), key, encode(event))
            self.checkpoint.output(self.batch, event.shop_id, record)
        self.dirty = True

    def flush(self) -> None:
        """Checkpoint the open batch, then empty the outbox as Kafka's acknowledgement does."""
        if not self.dirty:
            return
        assert self.checkpoint is not None
        batch, self.batch, self.dirty = self.batch, Batch(), False
        saved = self.loop.run(self.checkpoint.save(batch))
        if saved.lost or saved.waiting:
            raise RuntimeError(f"checkpoint not kept: lost {saved.lost}, waiting {saved.waiting}")
        self.loop.run(self.checkpoint.acknowledged())
        self.checkpoints += 1

    def look(self) -> None:
        """Figures of the day that just ended (the open batch checkpointed first)."""
        self.flush()
        assert self.checkpoint is not None
        engine = self.checkpoint.engine
        (shop,) = engine.shops.values()
        keys, rows, parts, memory = self.loop.run(redis_rows(self.store.client, PREFIX))
        sticky, conversion, stale = held(shop)
        figures = DayFigures(
            len(self.figures) + 1, self.events, self.checkpoints, self.rejected,
            deep_size(engine), keys, rows, parts, memory, len(shop.buyers), sticky,
            conversion, len(shop.seen), stale,
        )  # fmt: skip
        self.figures.append(figures)
        self.report(figures)

    def finish(self) -> None:
        """The run ended at the last midnight: checkpoint and look at the last day."""
        self.look()


class _WeekEngine:
    """A tracking engine that tells its `Week` about every call (the daemon's loop). It
    wraps the engine rather than subclassing it: the compiled core's classes take no
    Python subclasses."""

    def __init__(self, engine: Engine, week: Week) -> None:
        self.engine = engine
        self.week = week

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def handle(self, event: InputEvent, now: int) -> list[OutputEvent]:
        """`Engine.handle`, inside the week's batch of virtual second `now`."""
        week = self.week
        week.before(now)
        week.consumed(event)
        try:
            outputs = self.engine.handle(event, now)
        except EventRejected as rejected:
            week.rejected += 1
            week.decided(rejected.outputs)
            raise
        week.decided(outputs)
        return outputs

    def on_timer(self, now: int) -> list[OutputEvent]:
        """`Engine.on_timer`, inside the week's batch of virtual second `now`."""
        self.week.before(now)
        outputs = self.engine.on_timer(now)
        self.week.decided(outputs)
        return outputs


def run_week(
    shop: ShopConfig,
    redis_url: str,
    *,
    days: int = 7,
    scale: float = 1.0,
    seed: int = 1,
    report: Callable[[DayFigures], None] = lambda _: None,
    progress: Callable[[float], None] | None = None,
) -> list[DayFigures]:
    """Play `days` days of `steady` for `shop`, checkpointed to the Redis at `redis_url`
    under the prefix "week" (module docstring); each day's figures, also given to `report`
    as the day ends."""
    with asyncio.Runner() as loop:
        client = aioredis.Redis.from_url(redis_url)
        try:
            store = Store(client, PREFIX, dedup_capacity=DEFAULT_DEDUP_CAPACITY)
            week = Week(store, loop, find_scenario("steady").start, days, report)
            simulate(
                shop, "steady", seed=seed, policy=parse_policy("as-configured"), scale=scale,
                days=days, make_engine=week.engine, progress=progress, history="none",
            )  # fmt: skip
            week.finish()
        finally:
            loop.run(client.aclose())
    return week.figures


# ------------------------------------------------------------------------------- output


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def header() -> str:
    """The table's header line."""
    return (
        "| day | events | checkpoints | engine MiB | Redis keys | Redis rows (buyers / seen) "
        "| Redis MiB | buyers | sticky contacts | conversion records | dedup ids | stale |"
    )


def row(f: DayFigures) -> str:
    """One day's line of the table."""
    buyers, seen = f.redis_parts.get("buyers", 0), f.redis_parts.get("seen", 0)
    return (
        f"| {f.day} | {f.events:,} | {f.checkpoints:,} | {_mib(f.engine_bytes)} | "
        f"{f.redis_keys} | {f.redis_rows:,} ({buyers:,} / {seen:,}) | {_mib(f.redis_memory)} | "
        f"{f.buyers:,} | {f.sticky:,} | {f.conversion:,} | {f.dedup:,} | {f.stale} |"
    )


def ratios(figures: list[DayFigures]) -> list[str]:
    """The closing lines: the last day against the first, and against the day before the
    last two (once the 72-hour and 100,000-id windows have filled)."""
    first, last = figures[0], figures[-1]
    lines = []
    if len(figures) > 3:
        base = figures[-3]
        lines += [
            f"day{last.day}/day{base.day} memory = {last.engine_bytes / base.engine_bytes:.2f}",
            f"day{last.day}/day{base.day} redis rows = {last.redis_rows / base.redis_rows:.2f}",
        ]
    lines += [
        f"day{last.day}/day{first.day} memory = {last.engine_bytes / first.engine_bytes:.2f}",
        f"day{last.day}/day{first.day} redis rows = {last.redis_rows / first.redis_rows:.2f}",
    ]
    return lines


def main() -> None:
    """Parse the options, start Redis, run the week, print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shop", type=Path, default=BIG, help="shop file (default: big)")
    parser.add_argument("--days", type=int, default=7, help="virtual days (default 7)")
    parser.add_argument("--scale", type=float, default=1.0, help="buyers × this (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="the simulation's seed")
    args = parser.parse_args()
    shop = load_shop_file(args.shop)
    say(f"# {machine()}")
    path = args.shop.resolve()
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    say(
        f"# {args.days} days of `steady`, shop {shop.id!r} ({shown}), scale {args.scale:g}, "
        f"seed {args.seed}; a checkpoint per virtual second with work"
    )
    started = time.monotonic()
    with RedisServer() as server:
        say(f"# redis-server pid {server.pid} on port {server.port}")
        say(header())
        say("|" + "---|" * 12)
        figures = run_week(
            shop, server.url, days=args.days, scale=args.scale, seed=args.seed,
            report=lambda f: say(row(f)),
        )  # fmt: skip
    say(f"# wall time {time.monotonic() - started:.0f} s; rejected events {figures[-1].rejected}")
    for line in ratios(figures):
        say(line)


if __name__ == "__main__":
    main()
