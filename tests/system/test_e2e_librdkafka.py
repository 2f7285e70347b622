"""A front end on librdkafka (confluent-kafka), two `fenliu run` instances, 8 shops on 8
partitions (issue 14, contract §1 and 8).

Agents' status comes from aiokafka (murmur2, the contract's partitioner); buyers' inquiries
first from confluent-kafka with its default partitioner (CRC32: most shops land on another
partition number, owned by another instance or not), then with `partitioner=murmur2_random`.
The misrouted inquiries are dead-lettered with reason `misrouted` and decided by no one; the
murmur2 ones are routed; `fenliu dead-letter replay --reason misrouted` sends the earlier ones
home, where they are routed; a second replay changes nothing (their ids are duplicates).
"""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from daemon.core.config import ShopConfig
from daemon.dev.stack import Broker
from daemon.service.kafka import home_partition
from daemon.tools.topics_admin import create_topics
from tests.chaos import read_outputs
from tests.chaos_check import check
from tests.conftest import unique_topics
from tests.e2e import REPO, Wire, fleet_of_two, until

pytestmark = pytest.mark.e2e

PARTITIONS = 8
SHOPS = [f"s{n}" for n in range(8)]
SHOP = """
id = "{id}"
sticky_window = 0
[queue]
enabled = true
default_cap = 4
session_timeout = "60s"
[[agents]]
id = "a1"
[[groups]]
name = "g"
agents = ["a1"]
"""


def _librdkafka(bootstrap: str, topic: str, phase: str, **settings: str) -> list[dict[str, Any]]:
    """One inquiry per shop from confluent-kafka (no idempotence: Tansu lacks it)."""
    sent = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, **settings})
    for shop in SHOPS:
        body = {
            "type": "inquiry", "id": f"{phase}-{shop}", "shop_id": shop,
            "ts": int(time.time() * 1000), "buyer_id": f"{phase}-{shop}",
        }  # fmt: skip
        producer.produce(topic, orjson.dumps(body), key=shop.encode())
        sent.append(body)
    assert producer.flush(15) == 0, "confluent-kafka delivered every record"
    return sent


def _replay(config: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "dead-letter", "replay", "--config", str(config),
         "--reason", "misrouted"],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _assigned(w: Wire) -> Counter[str]:
    """Distinct assignments per buyer (an output id seen twice is one delivery repeated)."""
    ids = {(e["id"], e["buyer_id"]) for e in w.seen if e["type"] == "assignment"}
    return Counter(buyer for _, buyer in ids)


@pytest.mark.timeout(90)
async def test_librdkafka_defaults_are_dead_lettered_murmur2_routes_and_replay_recovers(
    broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=PARTITIONS)
    shops = {s: SHOP.format(id=s) for s in SHOPS}
    daemons = fleet_of_two(
        tmp_path, bootstrap=broker.bootstrap, redis_url=redis_url, topics=topics,
        shops=shops, group_id=f"rdk-{topics.inquiries}",
    )  # fmt: skip
    # librdkafka's default (consistent_random) puts a keyed record on crc32(key) mod n
    misrouted = {
        s
        for s in SHOPS
        if zlib.crc32(s.encode()) % PARTITIONS != home_partition(s.encode(), PARTITIONS)
    }
    assert len(misrouted) >= 4, "the scenario needs shops that CRC32 and murmur2 split"
    try:
        for daemon in daemons:
            daemon.start(ready="/healthz")

        def owned() -> list[int]:
            counts = []
            for daemon in daemons:
                status, body = daemon.get("/api/shops")
                counts.append(len(orjson.loads(body)["shops"]) if status == 200 else 0)
            return counts

        await until(lambda: sorted(owned()) == [4, 4], 30, "the shops split over both")
        inputs: list[dict[str, Any]] = []
        async with Wire(broker.bootstrap, topics, SHOPS[0], also=tuple(SHOPS)) as w:
            for shop in SHOPS:  # aiokafka: murmur2, the contract's partitioner
                body = {
                    "type": "agent_status", "id": f"on-{shop}", "shop_id": shop,
                    "ts": int(time.time() * 1000), "agent_id": "a1", "status": "online",
                }  # fmt: skip
                inputs.append(body)
                await (
                    await w.producer.send(
                        topics.agent_status, orjson.dumps(body), key=shop.encode()
                    )
                )

            inputs += _librdkafka(broker.bootstrap, topics.inquiries, "crc")
            await w.wait_for(lambda e: e["type"] == "rejected", count=len(misrouted))
            routed = set(SHOPS) - misrouted
            for shop in routed:
                await w.assignment(f"crc-{shop}")
            await w.settle(1.0)
            dead = [e for e in w.seen if e["type"] == "rejected"]
            assert {e["shop_id"] for e in dead} == misrouted
            assert {e["reason"] for e in dead} == {"misrouted"}
            assert all("partitioner=murmur2_random" in e["error"] for e in dead)
            touched = {e.get("buyer_id") for e in w.seen if e["type"] != "rejected"}
            assert not touched & {f"crc-{s}" for s in misrouted}, "no owner applied them"

            inputs += _librdkafka(
                broker.bootstrap, topics.inquiries, "m2", partitioner="murmur2_random"
            )
            for shop in SHOPS:
                await w.assignment(f"m2-{shop}")
            assert len([e for e in w.seen if e["type"] == "rejected"]) == len(misrouted)

            first = _replay(daemons[0].config)
            assert f"re-sent {len(misrouted)}\n" in first, first
            for shop in misrouted:
                assert (await w.assignment(f"crc-{shop}"))["agent_id"] == "a1"

            second = _replay(daemons[0].config)
            assert second == first, "the same dead letters, sent again"
            await w.settle(3.0)
            assigned = _assigned(w)
            assert set(assigned) == {f"{p}-{s}" for p in ("crc", "m2") for s in SHOPS}
            assert set(assigned.values()) == {1}, f"duplicate assignments: {assigned}"
            rejected = [e for e in w.seen if e["type"] == "rejected"]
            assert len({e["id"] for e in rejected}) == len(misrouted), "nothing new refused"
    finally:
        codes = [d.stop()[0] for d in daemons]
    assert codes == [0, 0], daemons[0].log_tail() + daemons[1].log_tail()
    # contract §6 over every output: the replayed inquiries judged as inputs like the others
    outputs = [e for e in await read_outputs(broker.bootstrap, topics) if e["type"] != "rejected"]
    configs = {s: ShopConfig.model_validate(tomllib.loads(text)) for s, text in shops.items()}
    verdict = check(inputs, outputs, configs)
    assert verdict.clean, verdict.report(examples=5)
