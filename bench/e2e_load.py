"""The load generator of bench/e2e.py's latency runs, meant to run in its own process.

`run(load, conn)` is the target of a `multiprocessing` process (spawned, so it shares no
state with the bench): it pins itself to `load.cpu` with `os.sched_setaffinity`, feeds
`load.stream` to the input topics paced at `load.rate` events/s, reads the output topics
meanwhile, and sends back through `conn` one `Answer` per inquiry that got an output.

Latency is measured as in bench/e2e.py from the start: from handing the inquiry to the
producer (`send`) until its first output (assignment or queue update) is read back by the
consumer. Each answer also carries the output's `ts` (epoch ms when the daemon took the
batch up) and its Kafka record timestamp (epoch ms when the daemon handed it to its
producer), to split the path into inbound, inside the daemon and outbound.

`echo(floor, conn)` is the other process target: the floor of the measure. Pinned where the
daemon would run, it consumes the input topics as the daemon does (same fetch wait) and
answers every inquiry at once with a minimal output, produced as the daemon produces (no
linger, `acks=all`) — the broker's and the clients' share of the latency, with no routing,
no Redis and no checkpoint.

An inquiry of a buyer who is already queued gets no output of its own (contract §3: the
buyer stays queued, and the `waiting` update names the first inquiry), so a few inquiries
of the stream stay unanswered: the report counts answers and inquiries.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from daemon.service.clients import FETCH_MAX_WAIT_MS

Record = tuple[str, bytes, bytes, str, bool]  # (topic field, key, value, event id, inquiry?)
TICK_S = 0.005  # the stream is handed to the producer in slices, one per tick
TAIL_S = 2.0  # after the last send, outputs are read this much longer
COLLECT_WAIT_MS = 5  # the measuring consumer's fetch wait (Tansu holds a fetch this long)


@dataclass(frozen=True, slots=True)
class Load:
    """What to feed, where, and how fast."""

    bootstrap: str
    topics: dict[str, str]  # topic field ("inquiries", "assignments", ...) -> topic name
    partitions: int
    stream: list[Record]
    rate: float  # events/s
    cpu: int | None  # pin the generator to this CPU (None: leave it where it is)
    watch: dict[str, int]  # processes whose CPU use is reported, by name: their pids


@dataclass(frozen=True, slots=True)
class Answer:
    """One inquiry's path: times in ms after it was handed to the producer (`sent_s`)."""

    sent_s: float  # epoch seconds
    latency_ms: float  # until its first output was read back
    decided_ms: float  # until the daemon took up the batch holding it (output `ts`)
    handed_ms: float  # until the daemon handed the output to its producer (record timestamp)


@dataclass(frozen=True, slots=True)
class Report:
    """What a load run sends back."""

    answers: list[Answer]
    inquiries: int  # inquiries sent
    events: int  # records sent
    seconds: float  # from the first send to the last
    cpus: list[int]  # the generator's CPUs while it ran
    busy: list[float]  # while feeding: how busy each CPU was (0..1), whoever used it
    cores: dict[str, float]  # while feeding: the cores each watched process used


@dataclass(frozen=True, slots=True)
class Floor:
    """Where the echo reads and answers."""

    bootstrap: str
    topics: dict[str, str]
    cpu: int | None


def echo(floor: Floor, conn: Connection) -> None:
    """Process target: pin, then answer every inquiry until `conn` says stop (it says
    "ready" once the consumer has its partitions)."""
    if floor.cpu is not None:
        os.sched_setaffinity(0, {floor.cpu})
    asyncio.run(_echo(floor, conn))


async def _echo(floor: Floor, conn: Connection) -> None:
    inputs = [floor.topics[t] for t in ("inquiries", "messages", "agent_status")]
    consumer = AIOKafkaConsumer(
        *inputs, bootstrap_servers=floor.bootstrap, group_id=f"echo-{inputs[0]}",
        enable_auto_commit=False, auto_offset_reset="latest", fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=floor.bootstrap, linger_ms=0, acks="all")
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        for tp in consumer.assignment():
            await consumer.position(tp)
        conn.send("ready")
        while not conn.poll():
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            now = int(time.time() * 1000)
            for tp, records in batch.items():
                if tp.topic != inputs[0]:
                    continue
                for r in records:
                    answer = {"inquiry_id": orjson.loads(r.value)["id"], "ts": now}
                    await producer.send(floor.topics["queue_updates"], orjson.dumps(answer), r.key)
    finally:
        await consumer.stop()
        await producer.stop()


def run(load: Load, conn: Connection) -> None:
    """Process target: pin, feed and measure, send the `Report` through `conn`."""
    if load.cpu is not None:
        os.sched_setaffinity(0, {load.cpu})
    try:
        conn.send(asyncio.run(measure(load)))
    finally:
        conn.close()


async def measure(load: Load) -> Report:
    """Feed the stream paced at `load.rate` and time every inquiry to its first output."""
    outputs = [load.topics["assignments"], load.topics["queue_updates"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=load.bootstrap, group_id=None, fetch_max_wait_ms=COLLECT_WAIT_MS
    )
    producer = AIOKafkaProducer(bootstrap_servers=load.bootstrap, linger_ms=0, acks=1)
    await consumer.start()
    await producer.start()
    try:
        parts = [TopicPartition(t, p) for t in outputs for p in range(load.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for tp in parts:  # positions fixed before the first send: no output is missed
            await consumer.position(tp)
        sent: dict[str, tuple[float, float]] = {}  # inquiry id -> (perf_counter, epoch s)
        answers: dict[str, Answer] = {}
        collector = asyncio.create_task(_collect(consumer, sent, answers))
        try:
            watch = {**load.watch, "load": os.getpid()}
            before = _usage_now(watch)
            seconds = await _feed(producer, load, sent)
            busy, cores = _usage(before, _usage_now(watch), seconds)
            await asyncio.sleep(TAIL_S)
        finally:
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
    finally:
        await consumer.stop()
        await producer.stop()
    return Report(
        answers=list(answers.values()),
        inquiries=len(sent),
        events=len(load.stream),
        seconds=seconds,
        cpus=sorted(os.sched_getaffinity(0)),
        busy=busy,
        cores=cores,
    )


Usage = tuple[list[tuple[int, int]], dict[str, float]]  # per CPU (busy, total); per process


def _usage_now(watch: dict[str, int]) -> Usage:
    return busy_ticks(), {name: cpu_seconds(pid) for name, pid in watch.items()}


def _usage(before: Usage, after: Usage, seconds: float) -> tuple[list[float], dict[str, float]]:
    """How busy each CPU was, and the cores each process used, between two readings."""
    busy = [
        (b1 - b0) / max(1, t1 - t0) for (b0, t0), (b1, t1) in zip(before[0], after[0], strict=True)
    ]
    cores = {name: (after[1][name] - used) / seconds for name, used in before[1].items()}
    return busy, cores


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_ticks() -> list[tuple[int, int]]:
    """Per CPU, (busy, total) clock ticks since boot, from /proc/stat."""
    ticks = []
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            numbers = [int(v) for v in values[:8]]
            idle = numbers[3] + numbers[4]  # idle + iowait
            ticks.append((sum(numbers) - idle, sum(numbers)))
    return ticks


async def _feed(
    producer: AIOKafkaProducer, load: Load, sent: dict[str, tuple[float, float]]
) -> float:
    """Hand the stream to the producer, `rate × TICK_S` records per tick; the seconds taken."""
    per_tick = max(1, round(load.rate * TICK_S))
    start = time.perf_counter()
    for i in range(0, len(load.stream), per_tick):
        for field, key, value, event_id, is_inquiry in load.stream[i : i + per_tick]:
            if is_inquiry:
                sent[event_id] = (time.perf_counter(), time.time())
            await producer.send(load.topics[field], value, key=key)
        delay = start + (i // per_tick + 1) * TICK_S - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    return time.perf_counter() - start


async def _collect(
    consumer: AIOKafkaConsumer,
    sent: dict[str, tuple[float, float]],
    answers: dict[str, Answer],
) -> None:
    """Read the outputs; the first one naming a sent inquiry is its answer."""
    while True:
        batch = await consumer.getmany(timeout_ms=100)
        arrived = time.perf_counter()
        for records in batch.values():
            for r in records:
                output = orjson.loads(r.value)
                inquiry = output.get("inquiry_id")
                if inquiry in sent and inquiry not in answers:
                    at, wall = sent[inquiry]
                    answers[inquiry] = Answer(
                        sent_s=wall,
                        latency_ms=(arrived - at) * 1000,
                        decided_ms=output["ts"] - wall * 1000,
                        handed_ms=r.timestamp - wall * 1000,
                    )
