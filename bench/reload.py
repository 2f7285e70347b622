"""Reload bench: a reload touching thousands of shop files while inquiries flow (issue 25,
contract §5, Reload).

    .venv/bin/python bench/reload.py [--shops 3000] [--rate 100] [--reloads 3]
    .venv/bin/python bench/reload.py --checkout DIR   # the daemon of another checkout

Starts a Tansu broker and a redis-server on free loopback ports, writes `--shops` shop files
(bench/fleet.py's: a tenth like config/shops/big.toml, the rest like small.toml; the shop
"traffic" gets the inquiries) and one `fenliu run` with all of them. A producer sends
`--rate` inquiries a second, each from a new buyer, to the traffic shop, and a consumer
reads the assignments back: an inquiry's latency is from handing it to the producer until
its assignment is read. After a quiet stretch, each of `--reloads` rounds rewrites every
shop file (`busy_threshold` changes, so every shop is reconfigured), asks POST /-/reload and
waits for its answer, then lets the stream settle again.

Prints the worst and p99 latency of the quiet inquiries (sent outside any reload) and, per
reload, of the inquiries sent from one second before it was asked until one second after
it answered; the daemon's `reload_ok` seconds (reading, validating and applying every file).
Target: the worst during a reload within 100 ms of the quiet worst. `--checkout` runs the
daemon of another checkout (e.g. `git archive HEAD~1 | tar -x -C /tmp/before`), so before
and after can be measured on the same machine back to back. Machine noise matters: quote
figures from one run.
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
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from fleet import SHOP, shop_files

from daemon.config import TopicsConfig
from daemon.dev.stack import Broker, RedisServer
from daemon.tools.topics_admin import create_topics
from tests.conftest import unique_topics
from tests.e2e import DaemonProcess, write_config
from topics.codec import encode
from topics.events import AgentStatus, AgentStatusChanged, BuyerInquired

QUIET_S = 15.0  # quiet stretch before the first reload and after each one
WARMUP_S = 5.0  # the first seconds of traffic are not counted
AROUND_S = 1.0  # a reload's window: from this long before it is asked to this long after


def say(text: str) -> None:
    """Progress and results, printed at once."""
    print(text, flush=True)


def rewrite(folder: Path, threshold: int) -> None:
    """Every shop file, with `busy_threshold = threshold`."""
    for path in folder.glob("*.toml"):
        text = path.read_text()
        path.write_text(
            re.sub(r"(?m)^busy_threshold = \d+$", f"busy_threshold = {threshold}", text)
        )


def post_reload(http: str) -> tuple[int, str]:
    """POST /-/reload: (status, body)."""
    request = urllib.request.Request(f"http://{http}/-/reload", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def reload_ok_seconds(daemon: DaemonProcess) -> list[float]:
    """The `seconds` of every `reload_ok` the daemon logged."""
    return [
        float(orjson.loads(line)["seconds"])
        for line in daemon.log_path.read_text().splitlines()
        if '"reload_ok"' in line
    ]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


class Flow:
    """Inquiries sent at a steady rate; their assignments read back."""

    def __init__(self, topics: TopicsConfig, rate: float) -> None:
        self.topics, self.rate = topics, rate
        self.sent: dict[str, float] = {}  # inquiry id -> monotonic time handed to the producer
        self.latency: dict[str, float] = {}  # inquiry id -> seconds until its assignment
        self.stopping = False

    async def send(self, producer: AIOKafkaProducer) -> None:
        key = SHOP.encode()
        for agent in ("xiaomei", "ajie", "lele"):
            event = AgentStatusChanged(f"on-{agent}", SHOP, int(time.time() * 1000), agent,
                                       AgentStatus.ONLINE)  # fmt: skip
            await producer.send_and_wait(self.topics.agent_status, encode(event), key=key)
        started, n = time.monotonic(), 0
        while not self.stopping:
            due = started + n / self.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            inquiry = BuyerInquired(f"i{n}", SHOP, int(time.time() * 1000), f"b{n}")
            self.sent[inquiry.id] = time.monotonic()
            await producer.send(self.topics.inquiries, encode(inquiry), key=key)
            n += 1

    async def read(self, consumer: AIOKafkaConsumer) -> None:
        while not self.stopping:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    inquiry = orjson.loads(record.value).get("inquiry_id")
                    if inquiry in self.sent and inquiry not in self.latency:
                        self.latency[inquiry] = now - self.sent[inquiry]

    def between(self, start: float, end: float) -> list[float]:
        """Latencies of the inquiries sent in [start, end) (unanswered ones: infinite)."""
        return [
            self.latency.get(i, float("inf")) for i, at in self.sent.items() if start <= at < end
        ]


def report(
    flow: Flow, windows: list[tuple[float, float]], span: tuple[float, float], took: list[float]
) -> None:
    """Print the quiet inquiries' latency and each reload's."""
    begun, ended = span
    quiet = [
        latency
        for i, at in flow.sent.items()
        if begun + WARMUP_S <= at < ended and not any(start <= at < end for start, end in windows)
        for latency in (flow.latency.get(i, float("inf")),)
    ]
    lost = [
        round(at - begun, 1) for i, at in flow.sent.items() if i not in flow.latency and at < ended
    ]
    say(f"unanswered: {len(lost)} sent at {lost[:10]} s")
    say(f"quiet: {len(quiet)} inquiries, p99 {pct(quiet, 0.99) * 1000:.0f} ms, "
        f"worst {max(quiet) * 1000:.0f} ms")  # fmt: skip
    worst_of_all = 0.0
    for n, (start, end) in enumerate(windows):
        during = flow.between(start, end)
        worst_of_all = max(worst_of_all, *during)
        seconds = f", reload_ok {took[n]:.2f}s" if n < len(took) else ""
        say(f"reload {n + 1}: {len(during)} inquiries, p99 {pct(during, 0.99) * 1000:.0f} ms, "
            f"worst {max(during) * 1000:.0f} ms{seconds}")  # fmt: skip
    say(f"worst during a reload - quiet worst = {(worst_of_all - max(quiet)) * 1000:.0f} ms "
        "(target: within 100 ms)")  # fmt: skip


async def run(args: argparse.Namespace) -> int:
    checkout: Path | None = args.checkout
    say(f"fenliu reload bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    say(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    say(
        f"command: .venv/bin/python bench/reload.py --shops {args.shops} --rate {args.rate} "
        f"--reloads {args.reloads}" + (f" --checkout {checkout}" if checkout else "")
    )
    say(f"daemon: {checkout or 'this checkout'}")
    if checkout is not None:
        os.environ["PYTHONPATH"] = str(checkout)
    with Broker() as broker, RedisServer() as redis, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        topics = unique_topics()
        await create_topics(broker.bootstrap, topics, partitions=6)
        config = write_config(
            folder, bootstrap=broker.bootstrap, redis_url=redis.url, topics=topics,
            shops=shop_files(args.shops),
        )  # fmt: skip
        daemon = DaemonProcess(config, cwd=checkout) if checkout else DaemonProcess(config)
        await asyncio.to_thread(daemon.start, 180.0)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks=1)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap, group_id=None, fetch_max_wait_ms=10
        )
        await producer.start()
        await consumer.start()
        parts = [TopicPartition(topics.assignments, p) for p in range(6)]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        flow = Flow(topics, args.rate)
        tasks = [asyncio.create_task(flow.send(producer)), asyncio.create_task(flow.read(consumer))]
        windows: list[tuple[float, float]] = []
        try:
            begun = time.monotonic()
            await asyncio.sleep(WARMUP_S + QUIET_S)
            for round_ in range(args.reloads):
                await asyncio.to_thread(rewrite, folder / "shops", 5 + round_ % 2)
                asked = time.monotonic()
                status, body = await asyncio.to_thread(post_reload, daemon.http)
                answered = time.monotonic()
                windows.append((asked - AROUND_S, answered + AROUND_S))
                first = body.strip().splitlines()[0] if body.strip() else ""
                say(f"reload {round_ + 1}: {status} {first} in {answered - asked:.2f}s")
                await asyncio.sleep(QUIET_S)
            ended = time.monotonic()  # inquiries sent from now on are not counted
            await asyncio.sleep(2.0)  # the last ones counted are answered
        finally:
            flow.stopping = True
            await asyncio.gather(*tasks, return_exceptions=True)
            await producer.stop()
            await consumer.stop()
            daemon.stop()
        report(flow, windows, (begun, ended), reload_ok_seconds(daemon))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shops", type=int, default=3000, help="shop files (default 3000)")
    parser.add_argument("--rate", type=float, default=100, help="inquiries a second (100)")
    parser.add_argument("--reloads", type=int, default=3, help="reloads (default 3)")
    parser.add_argument("--checkout", help="run the daemon of this checkout instead")
    arguments = parser.parse_args()
    if arguments.checkout:
        arguments.checkout = Path(arguments.checkout).resolve()
    sys.exit(asyncio.run(run(arguments)))
