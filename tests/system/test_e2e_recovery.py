"""Crash recovery end to end: a SIGKILLed `fenliu run` restarts from its Redis checkpoints.

Sessions, queue places and the outbox survive the kill; re-read input records change
nothing; outputs published again carry the same ids and contents (contract §6).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import redis

from daemon.core.patience import BINS, PATIENCE_EWMA
from daemon.dev.stack import Broker
from daemon.tools.topics_admin import create_topics
from tests.conftest import unique_topics
from tests.e2e import DaemonProcess, Wire, fleet_of_two, write_config

pytestmark = pytest.mark.e2e

CRASH = """
id = "crash"
sticky_window = 0
[queue]
enabled = true
default_cap = 1
session_timeout = "60s"
update_interval = "1s"
[[agents]]
id = "a1"
[[agents]]
id = "a2"
[[groups]]
name = "g"
agents = ["a1", "a2"]
"""


def by_id(events: list[dict]) -> dict[str, list[dict]]:
    seen: dict[str, list[dict]] = {}
    for event in events:
        seen.setdefault(event["id"], []).append(event)
    return seen


@pytest.mark.parametrize("redis_kind", ["single", "cluster"])
async def test_sigkill_and_restart_keep_sessions_queue_places_and_outputs(
    broker: Broker, redis_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """On a lone Redis and on a Redis Cluster (`[redis] cluster = true`)."""
    cluster = redis_kind == "cluster"
    url = request.getfixturevalue("cluster_url" if cluster else "redis_url")
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=2)
    config = write_config(
        tmp_path, bootstrap=broker.bootstrap, redis_url=url, topics=topics,
        shops={"crash": CRASH}, redis_cluster=cluster,
    )  # fmt: skip
    processes = [DaemonProcess(config).start()]
    try:
        async with Wire(broker.bootstrap, topics, "crash") as w:
            await w.status("a1", "online")
            await w.inquiry("b1")
            await w.inquiry("b2")
            await w.inquiry("b3")
            first = await w.assignment("b1")
            await w.wait_for(lambda e: e.get("status") == "queued", count=2)
            processes[0].kill()

            processes.append(DaemonProcess(config).start())
            # b1's session and the queue b2, b3 survived: b4 queues third, not served
            await w.inquiry("b4")
            queued = await w.wait_for(
                lambda e: e.get("status") == "queued" and e["buyer_id"] == "b4"
            )
            assert queued[0]["position"] == 3, processes[1].log_tail()
            # a second agent comes online: the first in line is served, the rest keep waiting
            await w.status("a2", "online")
            served = await w.assignment("b2", timeout=20)
            assert (served["agent_id"], served["reason"]) == ("a2", "dequeued")
            await w.settle(1.5)
    finally:
        code, _ = processes[-1].stop()
        processes[0].stop()
    assert code == 0, processes[-1].log_tail()

    assignments = [e for e in w.seen if e["type"] == "assignment"]
    assert [e["buyer_id"] for e in assignments if e["buyer_id"] == "b1"] == ["b1"] * len(
        [e for e in assignments if e["buyer_id"] == "b1"]
    )
    assert {e["agent_id"] for e in assignments if e["buyer_id"] == "b1"} == {first["agent_id"]}
    for event_id, copies in by_id(w.seen).items():
        assert all(c == copies[0] for c in copies), f"{event_id} published with two contents"
    assert {e["buyer_id"] for e in assignments} == {"b1", "b2"}


async def test_partitions_move_between_instances_with_their_shops(
    broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    """contract §7: a second instance takes half the partitions, then the first stops; each
    shop's sessions and queue go with its partition."""
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=2)
    shops = {name: CRASH.replace('"crash"', f'"{name}"') for name in ("left", "right")}
    first, second = fleet_of_two(
        tmp_path, bootstrap=broker.bootstrap, redis_url=redis_url, topics=topics, shops=shops
    )

    first.start()
    try:
        wires = [Wire(broker.bootstrap, topics, name) for name in shops]
        for w in wires:  # left and right land on different partitions (murmur2)
            await w.__aenter__()
            await w.status("a1", "online")
            await w.inquiry("b1")
            await w.inquiry("b2")
            await w.wait_for(lambda e: e.get("status") == "queued")

        second.start(ready_within=40)
        for w in wires:
            await w.inquiry("b3")
            b3 = await w.wait_for(lambda e: e.get("status") == "queued" and e["buyer_id"] == "b3")
            assert b3[0]["position"] == 2, (w.shop, first.log_tail(), second.log_tail())

        code, _ = first.stop()
        assert code == 0, first.log_tail()
        for w in wires:
            await w.inquiry("b4")
            b4 = await w.wait_for(
                lambda e: e.get("status") == "queued" and e["buyer_id"] == "b4", timeout=40
            )
            assert b4[0]["position"] == 3, (w.shop, second.log_tail())
            await w.status("a2", "online")
            served = await w.assignment("b2", timeout=20)
            assert (served["agent_id"], served["reason"]) == ("a2", "dequeued")
        for w in wires:
            await w.settle(0.5)
            assignments = [e for e in w.seen if e["type"] == "assignment"]
            assert sorted(e["buyer_id"] for e in assignments) == ["b1", "b2"], w.shop
            for event_id, copies in by_id(w.seen).items():
                assert all(c == copies[0] for c in copies), f"{event_id} differs"
            await w.__aexit__()
    finally:
        code = _stop_both(first, second)
    assert code == 0
    assert _restored(second) >= 2, "the second instance restored twice"


def _stop_both(first: DaemonProcess, second: DaemonProcess) -> int | None:
    """Stop both instances of a hand-over (the first may have stopped already): the second's
    exit code, None if it never started."""
    first.stop()
    return second.stop()[0] if second.proc is not None else None


def _restored(daemon: DaemonProcess) -> int:
    """How many times the instance restored shops from Redis (its log's `restored` lines)."""
    return daemon.log_path.read_text().count('"event":"restored"')


def _stored_agent(redis_url: str, prefix: str, shop: str, agent: str) -> dict:
    """An agent's row as the last checkpoint wrote it to Redis (daemon/service/store.py)."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.hget(f"{prefix}:{{{shop}}}:agents", agent)
    finally:
        client.close()
    assert raw is not None, f"no stored row of {agent} in shop {shop}"
    return orjson.loads(raw)


async def test_the_learned_arrival_profile_and_patience_move_with_their_partition(
    broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    """Issue 15, house rule 16 (fleet first, docs/development.md): when an agent comes online,
    and how long buyers wait in line before giving up, are learned state. What one live instance
    learned reaches the instance its partition moves to through the Redis checkpoint, and that
    one learns on top of it: a1's shift starts and ends, and the buyers who queued behind a1 and
    left, counted by the first instance and by the second, are all in the stored state
    afterwards."""
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=2)
    shops = {name: CRASH.replace('"crash"', f'"{name}"') for name in ("left", "right")}
    prefix = topics.inquiries.split(".")[0]
    first, second = fleet_of_two(
        tmp_path, bootstrap=broker.bootstrap, redis_url=redis_url, topics=topics, shops=shops
    )

    async def shift(w: Wire, buyer: str) -> None:
        """a1 starts a shift (serves `buyer`, which shows the events were applied) and ends it."""
        await w.status("a1", "online")
        await w.inquiry(buyer)
        await w.assignment(buyer, timeout=40)
        waiting = f"{buyer}-q"  # a1 is at its cap: queued, then gives up
        await w.inquiry(waiting)
        await w.wait_for(lambda e: e.get("status") == "queued" and e.get("buyer_id") == waiting)
        await w.send(topics.inquiries, {"type": "leave", "buyer_id": waiting})
        await w.wait_for(lambda e: e.get("status") == "left" and e.get("buyer_id") == waiting)
        await w.status("a1", "offline")
        await w.wait_for(lambda e: e["type"] == "session_closed" and e["buyer_id"] == buyer)

    first.start()
    try:
        wires = [Wire(broker.bootstrap, topics, name) for name in shops]
        for w in wires:
            await w.__aenter__()
            await shift(w, "b1")
            await shift(w, "b2")
        learned = {w.shop: _stored_agent(redis_url, prefix, w.shop, "a1") for w in wires}
        for row in learned.values():
            assert sum(weight for _, weight in row["arrivals"]) == pytest.approx(2, abs=1e-3)
        waited = {w.shop: _stored_patience(redis_url, prefix, w.shop) for w in wires}
        for leaves in waited.values():
            assert leaves == pytest.approx(_leaves(2))

        second.start(ready_within=40)
        code, _ = first.stop()  # every partition moves to the second instance
        assert code == 0, first.log_tail()
        for w in wires:
            await shift(w, "b3")
            await w.settle(0.5)
            await w.__aexit__()
    finally:
        code = _stop_both(first, second)
    assert code == 0
    assert _restored(second) >= 2
    for shop, before in learned.items():
        row = _stored_agent(redis_url, prefix, shop, "a1")
        assert sum(weight for _, weight in row["arrivals"]) == pytest.approx(3, abs=1e-3), shop
        assert sum(weight for _, weight in row["departures"]) == pytest.approx(3, abs=1e-3)
        assert row["observed_since"] == before["observed_since"]  # first instance's start
        assert row["offline_at"] > before["offline_at"] and row["status"] == "offline"
        assert _stored_patience(redis_url, prefix, shop) == pytest.approx(_leaves(3)), shop


def _leaves(n: int) -> float:
    """The weight of `n` leaves, the latest last, in a fresh candidate's patience."""
    return sum(PATIENCE_EWMA * (1 - PATIENCE_EWMA) ** k for k in range(n))


def _stored_patience(redis_url: str, prefix: str, shop: str) -> float:
    """The leaves in group g's learned patience as the last checkpoint wrote it (the meta
    part's `state`, daemon/service/store.py)."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.hget(f"{prefix}:{{{shop}}}:meta", "state")
    finally:
        client.close()
    assert raw is not None, f"no stored meta of shop {shop}"
    return float(sum(orjson.loads(raw)["candidates"]["g"]["patience"][:BINS]))
