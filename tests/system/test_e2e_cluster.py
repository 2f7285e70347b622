"""The daemon on a Redis Cluster (`[redis] cluster = true`), end to end.

Losing one master: the shops whose keys live on it wait (their records held, a metric per
shop), the shops on the other masters go on; the master comes back (same data folder, AOF
on) and the waiting shops resume where they stopped, nothing lost (contract §6 over every
output). The SIGKILL recovery and fleet chaos tests run on a cluster too
(tests/system/test_e2e_recovery.py, tests/system/test_chaos.py).
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from pathlib import Path

import pytest

from daemon.core.config import ShopConfig
from daemon.dev.stack import Broker
from daemon.tools.topics_admin import create_topics
from tests.chaos import read_outputs
from tests.chaos_check import check
from tests.conftest import unique_topics
from tests.e2e import DaemonProcess, Wire, write_config
from tests.redis_cluster import RedisCluster

pytestmark = pytest.mark.e2e

SHOP = """
id = "{id}"
[queue]
enabled = true
default_cap = 3
session_timeout = "60s"
[[agents]]
id = "a1"
[[groups]]
name = "g"
agents = ["a1"]
"""


def _pick(cluster: RedisCluster, prefix: str) -> tuple[str, str]:
    """A shop whose keys live on a master that holds neither partition 0's bookkeeping
    nor the other shop's keys, and that other shop."""
    mark = cluster.node_of(f"{prefix}:partition:{{0}}:mark")
    names = [f"shop{i}" for i in range(60)]
    victim = next(n for n in names if cluster.node_of(f"{prefix}:{{{n}}}:meta") is not mark)
    lost = cluster.node_of(f"{prefix}:{{{victim}}}:meta")
    healthy = next(n for n in names if cluster.node_of(f"{prefix}:{{{n}}}:meta") is not lost)
    return victim, healthy


async def _metric(daemon: DaemonProcess, line: str, present: bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (line in daemon.get("/metrics")[1]) != present:
        if time.monotonic() > deadline:
            raise AssertionError(f"{line!r} {'not ' if present else ''}in /metrics")
        await asyncio.sleep(0.2)


@pytest.mark.timeout(120)
async def test_losing_a_master_holds_only_its_shops_and_loses_nothing(
    broker: Broker, redis_cluster: RedisCluster, cluster_url: str, tmp_path: Path
) -> None:
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=1)
    prefix = topics.inquiries.split(".")[0]
    victim, healthy = _pick(redis_cluster, prefix)
    lost = redis_cluster.node_of(f"{prefix}:{{{victim}}}:meta")
    shops = {name: SHOP.format(id=name) for name in (victim, healthy)}
    config = write_config(
        tmp_path, bootstrap=broker.bootstrap, redis_url=cluster_url, topics=topics,
        shops=shops, redis_cluster=True,
    )  # fmt: skip
    daemon = DaemonProcess(config).start()
    try:
        async with (
            Wire(broker.bootstrap, topics, victim) as v,
            Wire(broker.bootstrap, topics, healthy) as h,
        ):
            for wire in (v, h):
                await wire.status("a1", "online")
                await wire.inquiry("b1")
                await wire.assignment("b1")

            lost.stop()  # the master holding the victim's keys goes away
            await v.inquiry("b2")  # decided in memory, its checkpoint fails: set aside
            await _metric(daemon, f'fenliu_shop_waiting{{shop="{victim}"}} 1.0', True, 30)
            await h.inquiry("b2")
            assert (await h.assignment("b2"))["agent_id"] == "a1", "the other shop goes on"
            await v.inquiry("b3")  # held with b2
            await v.settle(1.0)
            assert not [e for e in v.seen if e.get("buyer_id") in ("b2", "b3")], (
                "nothing the waiting shop decided was published"
            )

            lost.start()  # back with its data (append-only file)
            redis_cluster.wait_ok()
            await _metric(daemon, f'fenliu_shop_waiting{{shop="{victim}"}}', False, 30)
            for buyer in ("b2", "b3"):
                assert (await v.assignment(buyer, timeout=20))["agent_id"] == "a1"
            await h.inquiry("b4")
            await h.assignment("b4")
            await v.settle(1.0)
    finally:
        lost.start()
        code, _ = daemon.stop()
    assert code == 0, daemon.log_tail()
    outputs = await read_outputs(broker.bootstrap, topics)
    configs = {n: ShopConfig.model_validate(tomllib.loads(t)) for n, t in shops.items()}
    verdict = check([*v.sent, *h.sent], outputs, configs)
    assert verdict.clean, verdict.report(examples=5) + "\n" + daemon.log_tail(30)
