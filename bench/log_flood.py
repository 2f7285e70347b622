"""Log flood benchmark: how many log lines, and how long the longest, a flood of bad records
makes (contract §6: logs about bad input are bounded).

    .venv/bin/python bench/log_flood.py [--records N]

Starts a throw-away broker and redis-server and `fenliu run` with one shop, then produces one
record with a 100 KB key, then N records that do not decode (not JSON) and N/200 events of
shops nobody configures, all at once. Once `fenliu_rejects_total` has counted them all (every
one is dead-lettered), the daemon is stopped and its log read: the lines in all, the
`event_rejected` lines, and the longest line in bytes (the limit is 4,096).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from daemon.config import TopicsConfig
from daemon.dev.stack import Broker, RedisServer
from daemon.tools.topics_admin import create_topics
from tests.conftest import unique_topics
from tests.e2e import DaemonProcess, write_config

SHOP = 'id = "s1"\n[[agents]]\nid = "a1"\n[[groups]]\nname = "g"\nagents = ["a1"]\n'


def rejected(process: DaemonProcess) -> int:
    """The sum of `fenliu_rejects_total` over its reasons."""
    _, text = process.get("/metrics")
    lines = [line for line in text.splitlines() if line.startswith("fenliu_rejects_total{")]
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in lines))


async def flood(bootstrap: str, topics: TopicsConfig, records: int) -> int:
    """Produce the bad records; how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=2**20)
    await producer.start()
    try:
        big = producer.send(topics.inquiries, b"{}", key=b"k" * 100_000)
        await (await big)  # first, so that its line is the one written
        sent = [producer.send(topics.inquiries, b"not json %d" % n, key=b"s1")
                for n in range(records)]  # fmt: skip
        unknown = {"type": "message", "buyer_id": "b", "sender": "buyer", "ts": 1}
        for n in range(records // 200):
            body = orjson.dumps({**unknown, "id": f"m{n}", "shop_id": f"nobody{n}"})
            sent.append(producer.send(topics.messages, body, key=f"nobody{n}".encode()))
        for future in await asyncio.gather(*sent):
            await future
    finally:
        await producer.stop()
    return len(sent) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=6000)
    args = parser.parse_args()
    with Broker() as broker, RedisServer() as redis, tempfile.TemporaryDirectory() as folder:
        topics = unique_topics()
        asyncio.run(create_topics(broker.bootstrap, topics, partitions=2))
        config = write_config(
            Path(folder), bootstrap=broker.bootstrap, redis_url=redis.url, topics=topics,
            shops={"s1": SHOP},
        )  # fmt: skip
        process = DaemonProcess(config).start(ready_within=60)
        try:
            total = asyncio.run(flood(broker.bootstrap, topics, args.records))
            deadline = time.monotonic() + 120
            while rejected(process) < total:
                if time.monotonic() > deadline:
                    sys.exit(f"only {rejected(process)} of {total} rejected in 120 s")
                time.sleep(0.5)
        finally:
            code, _ = process.stop()
        lines = process.log_path.read_bytes().splitlines()
        events = [orjson.loads(line).get("event") for line in lines]
        print(f"bad records        {total} (all rejected; daemon exit {code})")
        print(f"log lines          {len(lines)}")
        print(f"event_rejected     {events.count('event_rejected')}")
        print(f"longest line       {max(len(line) + 1 for line in lines)} bytes (limit 4096)")


if __name__ == "__main__":
    main()
