"""More input partitions (docs/daemon.md, "Adding partitions"), end to end with two
`fenliu run` instances.

Tansu 0.6 does not offer CreatePartitions (its ApiVersions lists no key 37; aiokafka's
`create_partitions` raises IncompatibleBrokerVersion), so partitions cannot be added in place
here: this test takes the path that works on any broker, new input topics with 4 partitions
under the same Redis key prefix and group. Every shop has a session and a queued buyer on 2
partitions; the instances stop, start again on the 4-partition topics; s5 and s8 move from
partition 1 to 3 (murmur2 mod 4), s1 and s4 stay. Each shop's state follows it from Redis:
its queued buyer is dequeued when a second agent comes online on the new home, and nothing
is lost, doubled or conflicting (tests/chaos_check). Partitions added in place (the same
topics, offsets going on) are played without a broker in
tests/integration/test_checkpoint_owners.py (a moved shop's old offsets must not skip its
new home's records); the refusal of mismatched counts is
tests/integration/test_kafka_plumbing.py
`test_daemon_refuses_to_start_when_input_partition_counts_differ`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from daemon.config.daemon_file import TopicsConfig
from daemon.core.config import ShopConfig
from daemon.dev.stack import Broker
from daemon.service.clients import partition_counts
from daemon.service.kafka import home_partition
from daemon.tools.topics_admin import create_topics
from tests.chaos import read_outputs
from tests.chaos_check import check
from tests.conftest import unique_topics
from tests.e2e import DaemonProcess, Wire, fleet_of_two

pytestmark = pytest.mark.e2e

SHOP = """
id = "{id}"
[queue]
enabled = true
default_cap = 1
session_timeout = "60s"
[[agents]]
id = "a1"
[[agents]]
id = "a2"
[[groups]]
name = "g"
agents = ["a1", "a2"]
"""
SHOPS = ("s1", "s4", "s5", "s8")  # homes on 2 partitions: 1, 0, 1, 1; on 4: 1, 0, 3, 3


def _configs(
    folder: Path, broker: Broker, redis_url: str, topics: TopicsConfig, prefix: str
) -> list[DaemonProcess]:
    return fleet_of_two(
        folder, bootstrap=broker.bootstrap, redis_url=redis_url, topics=topics,
        shops={s: SHOP.format(id=s) for s in SHOPS}, key_prefix=prefix,
        kafka_extra='session_timeout = "2s"',
    )  # fmt: skip


@pytest.mark.timeout(90)
async def test_shops_rehome_with_their_state_when_partitions_are_added(
    broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    topics = unique_topics()
    prefix = topics.inquiries.split(".")[0]
    await create_topics(broker.bootstrap, topics, partitions=2)
    more = unique_topics().model_copy(
        update={"assignments": topics.assignments, "queue_updates": topics.queue_updates,
                "dead_letter": topics.dead_letter}
    )  # fmt: skip
    inputs = [more.inquiries, more.agent_status, more.messages]
    daemons = before = _configs(tmp_path / "before", broker, redis_url, topics, prefix)
    sent: list[dict[str, Any]] = []
    try:
        for daemon in daemons:
            daemon.start(ready="/healthz")
        for shop in SHOPS:  # before: a1 serves b1, b2 waits in the queue
            async with Wire(broker.bootstrap, topics, shop) as w:
                await w.status("a1", "online")
                await w.inquiry("b1")
                assert (await w.assignment("b1"))["agent_id"] == "a1"
                await w.inquiry("b2")
                await w.wait_for(lambda e: e.get("buyer_id") == "b2")
                sent += w.sent
        for daemon in before:
            assert daemon.stop()[0] == 0

        await create_topics(broker.bootstrap, more, partitions=4)
        assert await partition_counts(broker.bootstrap, inputs) == dict.fromkeys(inputs, 4)
        assert [home_partition(s.encode(), 4) for s in SHOPS] == [1, 0, 3, 3]

        daemons = _configs(tmp_path / "after", broker, redis_url, more, prefix)
        for daemon in daemons:
            daemon.start(ready="/healthz")
        for shop in SHOPS:  # after: producers send to the new home (murmur2 mod 4)
            async with Wire(broker.bootstrap, more, shop) as w:
                await w.status("a2", "online")
                served = await w.assignment("b2", timeout=30)
                assert served["agent_id"] == "a2", f"{shop}'s queue followed it"
                await w.inquiry("b3")  # a1 and a2 are both at their cap: b3 queues
                await w.wait_for(lambda e: e.get("buyer_id") == "b3")
                await w.settle(0.5)
                sent += w.sent
    finally:
        codes = [d.stop()[0] for d in daemons if d.proc is not None]
    outputs = await read_outputs(broker.bootstrap, topics)
    configs = {s: ShopConfig.model_validate(tomllib.loads(SHOP.format(id=s))) for s in SHOPS}
    verdict = check(sent, outputs, configs)
    assert verdict.clean, verdict.report(examples=5) + "\n" + daemons[0].log_tail(30)
    assert len(sent) == 5 * len(SHOPS), "3 events per shop before, 2 after"
    assert not [e for e in outputs if e.get("type") == "rejected"], "nothing dead-lettered"
    assert set(codes) <= {0}
