"""The chaos suite: real `fenliu run` instances killed at random moments under a continuous stream.

Used by `tests/system/test_chaos.py` (a few kills) and `bench/chaos.py --kills N` (many).

- `SHOP_FILES` / `SHOP_CONFIGS`: four shops with queueing on, caps of 1–2, 3 s sessions and
  an 8 s `max_wait`, so queues form, drain and expire within seconds.
- `Driver`: a seeded (`random.Random(seed)`) producer of valid input events for all shops —
  inquiries (some with priority), buyer and agent messages, leaves, orders, agent status
  flips — with real-time `ts`; it keeps every event it produced, in order.
- `run_chaos(plan, ...)`: starts the daemon (or a fleet of them in one consumer group), drives
  for `plan.seconds` while stopping instances (SIGKILL or SIGTERM) at seeded moments and
  restarting them — a watcher restarts, and reports as `crashed`, any that dies on its own —
  then puts every agent online, has an agent answer every
  buyer, stops producing, waits until nothing is open or queued (or nothing moves), reads
  every output topic from the beginning and returns `check(...)`'s `Verdict` with the run's
  figures (kills, restarts, recovery times) added.
- `run_chaos(plan, ..., releases=[old, new, old])`: a rolling deploy instead of random
  stops: the fleet starts on the first `Release` (another checkout's `fenliu`, say) and each
  later one is rolled over it one instance at a time (SIGTERM, start, ready, a seeded pause).
- `check`, `Verdict`: the pure checker, in `tests/chaos_check.py`.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import tomllib
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from daemon.config import TopicsConfig
from daemon.core.config import ShopConfig
from daemon.tools.topics_admin import create_topics
from tests.chaos_check import KINDS, Event, Verdict, check, open_state
from tests.e2e import DaemonProcess, write_config
from topics.codec import encode
from topics.events import (
    AgentStatus,
    AgentStatusChanged,
    BuyerInquired,
    BuyerLeft,
    InputEvent,
    InquiryContext,
    MessageSent,
    OrderPlaced,
)

__all__ = [
    "KINDS",
    "SHOP_CONFIGS",
    "SHOP_FILES",
    "ChaosPlan",
    "Driver",
    "Release",
    "Verdict",
    "check",
    "read_outputs",
    "run_chaos",
]

_QUEUE = """
[queue]
enabled = true
default_cap = {cap}
session_timeout = "3s"
repeat_entry_window = "{repeat}"
avg_handle_time = "4s"
max_wait = "8s"
update_interval = "1s"
"""

SHOP_FILES: dict[str, str] = {
    # one group, cap 1, repeat entry on (the cap exception), sticky on
    "chaos-a": 'id = "chaos-a"\nmode = "efficiency"\n'
    + _QUEUE.format(cap=1, repeat="5s")
    + '[[agents]]\nid = "a1"\n[[agents]]\nid = "a2"\n[[agents]]\nid = "a3"\n'
    '[[groups]]\nname = "all"\nagents = ["a1", "a2", "a3"]\n',
    # presale (matched by intent, cap 1) and general (the unmatched, cap 2); no stickiness
    "chaos-b": 'id = "chaos-b"\nmode = "average"\nsticky_window = 0\n'
    + _QUEUE.format(cap=2, repeat="0s")
    + '[[agents]]\nid = "b1"\n[[agents]]\nid = "b2"\n[[agents]]\nid = "b3"\n'
    '[[agents]]\nid = "b4"\n'
    '[[groups]]\nname = "presale"\nagents = ["b1", "b2"]\ncap = 1\naccept_unmatched = false\n'
    '[groups.match]\nintents = ["presale"]\n'
    '[[groups]]\nname = "general"\nagents = ["b3", "b4"]\n',
    # weighted; vip (crowd, one agent with cap 1) and general (cap 2)
    "chaos-c": 'id = "chaos-c"\nmode = "weighted"\n'
    + _QUEUE.format(cap=2, repeat="0s")
    + '[[agents]]\nid = "c1"\ncap = 1\n[[agents]]\nid = "c2"\nweight = 2.0\n'
    '[[agents]]\nid = "c3"\n'
    '[[groups]]\nname = "vip"\nagents = ["c1"]\naccept_unmatched = false\n'
    '[groups.match]\ncrowd = ["vip"]\n'
    '[[groups]]\nname = "general"\nagents = ["c2", "c3"]\n',
    # efficiency, cap 2, repeat entry and stickiness on
    "chaos-d": 'id = "chaos-d"\nmode = "efficiency"\n'
    + _QUEUE.format(cap=2, repeat="5s")
    + '[[agents]]\nid = "d1"\n[[agents]]\nid = "d2"\n[[agents]]\nid = "d3"\n'
    '[[groups]]\nname = "all"\nagents = ["d1", "d2", "d3"]\n',
}
SHOP_CONFIGS: dict[str, ShopConfig] = {
    shop: ShopConfig.model_validate(tomllib.loads(text)) for shop, text in SHOP_FILES.items()
}

BUYERS_PER_SHOP = 20
RATES = {  # events per second per shop
    "inquiry": 1.2,
    "buyer_message": 1.2,
    "agent_message": 1.5,
    "leave": 0.3,
    "order": 0.2,
    "agent_status": 0.5,
}
TICK_S = 0.05


def wall_ms() -> int:
    """Epoch milliseconds, the `ts` of every input."""
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------------- driver


class Driver:
    """Produces a seeded, continuous stream of valid input events for every shop."""

    def __init__(
        self, seed: int, bootstrap: str, topics: TopicsConfig, shops: Mapping[str, ShopConfig]
    ) -> None:
        self.rng = random.Random(seed)
        self.seed, self.topics, self.shops = seed, topics, shops
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
        self.inputs: list[dict[str, Any]] = []  # every event produced, in order
        self.status = {(s, a.id): "offline" for s, c in shops.items() for a in c.agents}
        self.recent: dict[str, deque[str]] = {shop: deque(maxlen=8) for shop in shops}
        self.buyers: dict[str, dict[str, None]] = {shop: {} for shop in shops}  # inquirers
        self.stopping = False
        self._n = 0

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(self, events: Sequence[InputEvent]) -> None:
        """Produce the events (in order), and note them."""
        pending = []
        for event in events:
            value = encode(event)
            topic = self.topic(event)
            pending.append(await self.producer.send(topic, value, key=event.shop_id.encode()))
            self.inputs.append(orjson.loads(value))
        await asyncio.gather(*pending)

    def topic(self, event: InputEvent) -> str:
        if isinstance(event, MessageSent):
            return self.topics.messages
        if isinstance(event, AgentStatusChanged):
            return self.topics.agent_status
        return self.topics.inquiries

    def next_id(self, shop: str) -> str:
        self._n += 1
        return f"{shop}-s{self.seed}-{self._n}"

    async def drive(self) -> None:
        """Produce the random stream until `stopping` is set."""
        while not self.stopping:
            events = [e for shop in self.shops for e in self.tick(shop)]
            await self.send(events)
            await asyncio.sleep(TICK_S)

    def tick(self, shop: str) -> list[InputEvent]:
        """The events of one shop in one tick (each kind with probability rate × tick)."""
        rng, out = self.rng, []
        for kind, rate in RATES.items():
            if rng.random() < rate * TICK_S:
                event = self.make(shop, kind)
                if event is not None:
                    out.append(event)
        return out

    def make(self, shop: str, kind: str) -> InputEvent | None:
        """One event of `kind` for `shop`; None when no buyer has inquired yet."""
        if kind == "inquiry":
            return self.inquiry(shop)
        if kind == "agent_status":
            return self.status_flip(shop)
        if not self.recent[shop]:
            return None
        rng, now, id_ = self.rng, wall_ms(), self.next_id(shop)
        buyer = rng.choice(self.recent[shop])
        makers: dict[str, Callable[[], InputEvent]] = {
            "buyer_message": lambda: MessageSent(id_, shop, now, buyer, "buyer"),
            "agent_message": lambda: MessageSent(
                id_, shop, now, buyer, "agent", rng.choice(self.shops[shop].agents).id
            ),
            "leave": lambda: BuyerLeft(id_, shop, now, buyer),
            "order": lambda: OrderPlaced(id_, shop, now, buyer, round(rng.uniform(5, 500), 2)),
        }
        return makers[kind]()

    def inquiry(self, shop: str) -> BuyerInquired:
        rng = self.rng
        buyer = f"{shop}-b{rng.randrange(BUYERS_PER_SHOP)}"
        self.recent[shop].append(buyer)
        self.buyers[shop][buyer] = None
        context = InquiryContext(
            crowd=("vip",) if rng.random() < 0.25 else (),
            intent=rng.choice(("presale", "aftersale", None)),
        )
        priority = 1 if rng.random() < 0.2 else 0
        return BuyerInquired(self.next_id(shop), shop, wall_ms(), buyer, context, priority)

    def status_flip(self, shop: str) -> AgentStatusChanged:
        agent = self.rng.choice(self.shops[shop].agents).id
        status = self.rng.choices(("online", "suspended", "offline"), (0.6, 0.2, 0.2))[0]
        self.status[shop, agent] = status
        return AgentStatusChanged(self.next_id(shop), shop, wall_ms(), agent, AgentStatus(status))

    async def wind_down(self) -> None:
        """Every agent online, then an agent answers every buyer (so every session can time
        out); the stream stops here."""
        now = wall_ms()
        online = [
            AgentStatusChanged(self.next_id(shop), shop, now, agent, AgentStatus.ONLINE)
            for (shop, agent) in self.status
        ]
        self.status = dict.fromkeys(self.status, "online")
        await self.send(online)
        replies = [
            MessageSent(
                self.next_id(shop), shop, wall_ms(), buyer, "agent", self.shops[shop].agents[0].id
            )
            for shop, buyers in self.buyers.items()
            for buyer in buyers
        ]
        await self.send(replies)


# -------------------------------------------------------------------------------- outputs


class OutputReader:
    """Reads the three output topics from the beginning and keeps every record."""

    def __init__(self, bootstrap: str, topics: TopicsConfig) -> None:
        self.names = [topics.assignments, topics.queue_updates, topics.dead_letter]
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        self.records: dict[TopicPartition, list[Event]] = {}

    async def __aenter__(self) -> OutputReader:
        await self.consumer.start()
        await self.consumer.topics()  # fetch the metadata of every topic
        parts = [
            TopicPartition(name, p)
            for name in self.names
            for p in sorted(self.consumer.partitions_for_topic(name) or ())
        ]
        self.consumer.assign(parts)
        await self.consumer.seek_to_beginning(*parts)
        self.records = {tp: [] for tp in parts}
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    @property
    def outputs(self) -> list[Event]:
        """Every record so far: partition by partition, each in offset order."""
        return [e for tp in sorted(self.records) for e in self.records[tp]]

    async def poll(self, timeout_ms: int = 200) -> int:
        """Fetch what arrived; how many records."""
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)
        for tp, records in batch.items():
            self.records[tp].extend(orjson.loads(r.value) for r in records)
        return sum(len(r) for r in batch.values())

    async def read_to_end(self, timeout_s: float = 30.0) -> list[Event]:
        """Everything up to the end offsets as of now."""
        ends = await self.consumer.end_offsets(list(self.records))
        deadline = time.monotonic() + timeout_s
        for tp, end in ends.items():
            while await self.consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"output topics not read to their end in {timeout_s}s")
                await self.poll()
        return self.outputs


async def read_outputs(bootstrap: str, topics: TopicsConfig) -> list[Event]:
    """Every record of the output topics, from the beginning to the current end."""
    async with OutputReader(bootstrap, topics) as reader:
        return await reader.read_to_end()


# ------------------------------------------------------------------------------------ run


@dataclass(frozen=True)
class ChaosPlan:
    """What to do: run `instances` daemons in one consumer group over `partitions` partitions
    and drive at least `seconds`, stopping an instance `kills` times, each after a seeded
    random uptime (`uptime_s`, counted from start or from the last recovery) with a signal
    drawn from `signals` (with several instances, now and then two at once); the stream goes
    on `tail_s` after the last recovery."""

    seed: int = 1
    seconds: float = 30.0
    kills: int = 3
    uptime_s: tuple[float, float] = (0.5, 4.0)
    warmup_s: float = 2.0  # added to the first uptime
    tail_s: float = 3.0
    settle_s: float = 30.0  # longest wait for quiescence after the stream stops
    instances: int = 1
    partitions: int = 4
    signals: tuple[signal.Signals, ...] = (signal.SIGKILL,)
    pair_chance: float = 0.25  # with 3+ instances: chance that a stop hits two at once

    def uptimes(self) -> list[float]:
        """The seconds the daemon runs before each kill."""
        rng = random.Random(self.seed * 7919 + 1)
        ups = [rng.uniform(*self.uptime_s) for _ in range(self.kills)]
        return [ups[0] + self.warmup_s, *ups[1:]] if ups else []


@dataclass(frozen=True)
class Release:
    """A `fenliu` to run: its command and the folder it runs in (another checkout's)."""

    command: tuple[str, ...]
    cwd: Path


@dataclass
class RunFacts:
    """What the run did to the daemons, and what they did by themselves."""

    kills: int = 0
    restarts: int = 0
    recoveries_s: list[float] = field(default_factory=list)  # restart -> ready again
    downtimes_s: list[float] = field(default_factory=list)  # stop -> ready again
    unclean_stops: list[str] = field(default_factory=list)  # SIGTERM not ending in exit 0
    crashes: list[str] = field(default_factory=list)  # exits nobody asked for, with the log


Progress = Callable[[str], None]
MAX_CRASHES = 10  # a fleet crashing this often is hopeless: stop the run


class Fleet:
    """The daemon instances of a run; a watcher restarts (and reports) any that dies on its
    own, so a crash shows in the verdict instead of hanging the run."""

    def __init__(self, daemons: list[DaemonProcess], facts: RunFacts, say: Progress) -> None:
        self.daemons, self.facts, self.say = daemons, facts, say
        self.stopping: set[int] = set()  # indexes the killer is stopping or restarting
        self.closed = False

    async def watch(self) -> None:
        """Until closed: restart any instance that exited without being asked to."""
        while not self.closed:
            await asyncio.sleep(0.2)
            for i, daemon in enumerate(self.daemons):
                if i in self.stopping or daemon.proc is None or daemon.proc.poll() is None:
                    continue
                tail = daemon.log_tail(30)
                self.facts.crashes.append(f"instance {i} exited {daemon.proc.returncode}: {tail}")
                self.say(f"  instance {i} CRASHED (exit {daemon.proc.returncode}); restarting")
                self.stopping.add(i)
                try:
                    await self.restart(i)
                finally:
                    self.stopping.discard(i)

    async def restart(self, i: int) -> None:
        """Start instance `i` and wait until ready; one that dies while starting is a crash
        (after MAX_CRASHES of them the run gives up)."""
        try:
            await asyncio.to_thread(self.daemons[i].start, 60.0)
        except AssertionError as exc:
            self.facts.crashes.append(f"instance {i} did not come back: {exc}")
            self.say(f"  instance {i} did not come back: {str(exc).splitlines()[-1]}")
            if len(self.facts.crashes) >= MAX_CRASHES:
                raise


async def _stop_one(daemon: DaemonProcess, sig: signal.Signals, facts: RunFacts) -> None:
    """Send `sig` and wait for the exit; SIGTERM must end in exit 0 within 10 s."""
    assert daemon.proc is not None
    daemon.signal(sig)
    if sig == signal.SIGKILL:
        await asyncio.to_thread(daemon.proc.wait)
        return
    code, took = await asyncio.to_thread(daemon.stop, 15.0)
    if code != 0 or took > 10.0:
        facts.unclean_stops.append(f"{sig.name}: exit {code} after {took:.1f}s")


async def _killer(plan: ChaosPlan, fleet: Fleet, say: Progress) -> None:
    """Stop one instance (or two) after each of the plan's uptimes with a seeded signal;
    restart after a random pause of up to 1 s and wait until ready (/readyz) again."""
    rng = random.Random(plan.seed * 31 + 7)
    facts, started = fleet.facts, time.monotonic()
    for uptime in plan.uptimes():
        await asyncio.sleep(uptime)
        two = plan.instances >= 3 and rng.random() < plan.pair_chance
        victims = rng.sample(range(plan.instances), 2 if two else 1)
        sig = rng.choice(plan.signals)
        while fleet.stopping & set(victims):  # noqa: ASYNC110 - the watcher restarts one
            await asyncio.sleep(0.2)
        fleet.stopping.update(victims)
        pids = [fleet.daemons[i].proc.pid for i in victims if fleet.daemons[i].proc]
        killed = time.monotonic()
        await asyncio.gather(*(_stop_one(fleet.daemons[i], sig, facts) for i in victims))
        facts.kills += len(victims)
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        restarted = time.monotonic()
        await asyncio.gather(*(fleet.restart(i) for i in victims))
        fleet.stopping.difference_update(victims)
        facts.restarts += len(victims)
        facts.recoveries_s.append(time.monotonic() - restarted)
        facts.downtimes_s.append(time.monotonic() - killed)
        say(
            f"  t={killed - started:5.1f}s {sig.name} instance(s) {victims} (pid {pids}); "
            f"restarted after {restarted - killed:.1f}s, ready {facts.recoveries_s[-1]:.1f}s later"
        )


async def _roll_out(
    plan: ChaosPlan, fleet: Fleet, releases: Sequence[Release], say: Progress
) -> None:
    """Roll each release after the first over the fleet, one instance at a time: SIGTERM,
    start it on the release, wait until ready, then pause a seeded `plan.uptime_s`."""
    rng = random.Random(plan.seed * 31 + 7)
    facts = fleet.facts
    await asyncio.sleep(plan.warmup_s)
    for n, release in enumerate(releases[1:], 1):
        for i, daemon in enumerate(fleet.daemons):
            fleet.stopping.add(i)
            stopped = time.monotonic()
            await _stop_one(daemon, signal.SIGTERM, facts)
            facts.kills += 1
            daemon.command, daemon.cwd = list(release.command), release.cwd
            await fleet.restart(i)
            fleet.stopping.discard(i)
            facts.restarts += 1
            facts.downtimes_s.append(time.monotonic() - stopped)
            say(f"  release {n} ({release.cwd}) on instance {i}, {facts.downtimes_s[-1]:.1f}s")
            await asyncio.sleep(rng.uniform(*plan.uptime_s))


async def _settle(reader: OutputReader, plan: ChaosPlan, say: Progress) -> float:
    """Wait until nothing is open or queued and outputs stopped (or nothing moved for
    longer than any timer); the seconds it took."""
    started = last_change = time.monotonic()
    timeout = max(c.queue.session_timeout for c in SHOP_CONFIGS.values()) / 1000
    while time.monotonic() - started < plan.settle_s:
        if await reader.poll(500):
            last_change = time.monotonic()
        quiet = time.monotonic() - last_change
        if (open_state(reader.outputs) == (0, 0) and quiet > 1.5) or quiet > timeout + 3:
            break
    sessions, queued = open_state(reader.outputs)
    took = time.monotonic() - started
    say(f"settled after {took:.1f}s: {sessions} sessions open, {queued} buyers queued")
    return took


async def run_chaos(
    plan: ChaosPlan,
    *,
    bootstrap: str,
    redis_url: str,
    folder: Path,
    progress: Progress | None = None,
    redis_cluster: bool = False,
    releases: Sequence[Release] = (),
) -> Verdict:
    """The whole chaos run (see the module docstring); the verdict with the run's figures.
    `redis_cluster`: `redis_url` names a node of a Redis Cluster; `releases`: a rolling
    deploy of each after the first, instead of the plan's random stops."""
    say = progress or (lambda _: None)
    prefix = f"chaos{plan.seed}-{uuid.uuid4().hex[:8]}"
    topics = TopicsConfig(**{f: f"{prefix}.{f}" for f in TopicsConfig.model_fields})
    await create_topics(bootstrap, topics, partitions=plan.partitions)
    daemons = []
    for i in range(plan.instances):
        (folder / f"i{i}").mkdir()
        config = write_config(
            folder / f"i{i}",
            bootstrap=bootstrap,
            redis_url=redis_url,
            topics=topics,
            shops=SHOP_FILES,
            group_id=f"{prefix}.fenliu",
            redis_cluster=redis_cluster,
        )
        first = releases[0] if releases else None
        daemons.append(
            DaemonProcess(config, command=first.command, cwd=first.cwd) if first
            else DaemonProcess(config)
        )  # fmt: skip
    await asyncio.gather(*(asyncio.to_thread(d.start, 60.0) for d in daemons))
    say(
        f"{plan.instances} daemon(s) ready (logs: {folder}/i*/daemon.log); "
        f"driving ≥{plan.seconds:g}s, {plan.kills} stops"
    )
    started = time.monotonic()
    driver = Driver(plan.seed, bootstrap, topics, SHOP_CONFIGS)
    facts = RunFacts()
    fleet = Fleet(daemons, facts, say)
    watching = asyncio.create_task(fleet.watch())
    await driver.start()
    driving: asyncio.Task[None] | None = None
    try:
        await driver.wind_down()  # every agent online to begin with
        driving = asyncio.create_task(driver.drive())
        await (_roll_out(plan, fleet, releases, say) if releases else _killer(plan, fleet, say))
        await asyncio.sleep(max(plan.tail_s, plan.seconds - (time.monotonic() - started)))
        driver.stopping = True
        await driving
        drive_s = time.monotonic() - started
        await driver.wind_down()
        say(f"stream stopped after {len(driver.inputs)} events; settling ...")
        async with OutputReader(bootstrap, topics) as reader:
            settle_s = await _settle(reader, plan, say)
        end_ms = wall_ms()
        outputs = await read_outputs(bootstrap, topics)
    finally:
        driver.stopping = True
        if driving is not None:
            await asyncio.gather(driving, return_exceptions=True)
        await driver.stop()
        fleet.closed = True
        await watching
        fleet.stopping.update(range(len(daemons)))
        codes = await asyncio.gather(*(asyncio.to_thread(d.stop) for d in daemons))
    verdict = check(driver.inputs, outputs, SHOP_CONFIGS, end_ms=end_ms)
    for crash in facts.crashes:
        verdict.add("crashed", crash)
    for stop in facts.unclean_stops:
        verdict.add("crashed", f"unclean stop: {stop}")
    verdict.figures.update(
        {
            "instances": plan.instances,
            "kills": facts.kills,
            "restarts": facts.restarts,
            "crashes": len(facts.crashes),
            "max_recovery_s": max(facts.recoveries_s, default=0.0),
            "mean_recovery_s": sum(facts.recoveries_s) / max(len(facts.recoveries_s), 1),
            "max_downtime_s": max(facts.downtimes_s, default=0.0),
            "drive_s": drive_s,
            "settle_s": settle_s,
            "final_exit_code": max(code for code, _ in codes),
        }
    )
    return verdict
