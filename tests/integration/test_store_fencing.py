"""Owner epochs in Redis (daemon.service.store): a claim fences the previous owner, a re-sent
write is harmless, and the scripts survive Redis losing its script cache. Every test runs
against a real redis-server and against a real three-master Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from daemon.core.snapshot import ShopDelta
from daemon.service.store import (
    OutboxRecord,
    Outcome,
    Owned,
    PartitionCheckpoint,
    ShopCheckpoint,
    Store,
)

SHOP = "s1"
META = {"format": 2, "shop_id": SHOP, "now": 5, "seq": 1, "candidates": {}}


@pytest.fixture(params=["single", "cluster"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A client of an empty Redis: a lone server, or a cluster."""
    if request.param == "single":
        url = request.getfixturevalue("redis_url")
        redis_client: Any = aioredis.Redis.from_url(url)
    else:
        url = request.getfixturevalue("cluster_url")
        redis_client = RedisCluster.from_url(url)
    try:
        yield redis_client
    finally:
        await redis_client.aclose()


def _store(client: Any) -> Store:
    return Store(client, "t", dedup_capacity=3)


def _checkpoint(buyer: str, offset: int, out: str) -> ShopCheckpoint:
    delta = ShopDelta(meta=META, agents={}, buyers={buyer: {"id": buyer}}, seen=[f"e{offset}"])
    record = OutboxRecord("assignments", SHOP.encode(), out.encode())
    return ShopCheckpoint(delta, {"inquiries": offset}, [record])


async def test_a_claim_fences_the_previous_owner(client: Any) -> None:
    """A claims, writes; B claims and sees A's write; A's next write is FENCED and changes
    nothing; B writes on."""
    a, b = _store(client), _store(client)
    epoch_a = (await a.claim_shops([SHOP]))[SHOP].epoch
    first = await a.save_shops({SHOP: (Owned(epoch_a, 1), _checkpoint("b1", 1, "x1"))})
    assert first == {SHOP: Outcome.OK}

    taken = (await b.claim_shops([SHOP]))[SHOP]
    assert taken.epoch > epoch_a
    assert taken.snapshot is not None and set(taken.snapshot["buyers"]) == {"b1"}
    assert [r.value for r in taken.outbox] == [b"x1"]

    late = await a.save_shops({SHOP: (Owned(epoch_a, 2), _checkpoint("zombie", 2, "z"))})
    assert late == {SHOP: Outcome.FENCED}
    cleared = await a.clear_outboxes({SHOP: epoch_a}, {})
    assert cleared == {SHOP: Outcome.FENCED}

    mine = await b.save_shops({SHOP: (Owned(taken.epoch, 1), _checkpoint("b2", 2, "y2"))})
    assert mine == {SHOP: Outcome.OK}
    stored = (await b.claim_shops([SHOP]))[SHOP]
    assert stored.snapshot is not None
    assert set(stored.snapshot["buyers"]) == {"b1", "b2"}, "the zombie's buyer never landed"
    assert stored.offsets == {"inquiries": 2}
    assert [r.value for r in stored.outbox] == [b"x1", b"y2"], "A's clear changed nothing"


async def test_a_resent_write_appends_nothing_twice(client: Any) -> None:
    """The same checkpoint number again (a client re-sending a script after a lost reply)
    is AGAIN: the outbox and the seen ids do not grow."""
    store = _store(client)
    epoch = (await store.claim_shops([SHOP]))[SHOP].epoch
    write = {SHOP: (Owned(epoch, 1), _checkpoint("b1", 1, "x1"))}
    assert await store.save_shops(write) == {SHOP: Outcome.OK}
    assert await store.save_shops(write) == {SHOP: Outcome.AGAIN}
    assert await client.llen(store.key(SHOP, "outbox")) == 1
    assert await client.llen(store.key(SHOP, "seen")) == 1


async def test_partitions_are_fenced_and_keep_watermarks(client: Any) -> None:
    """Watermarks and shop-less outboxes follow the same rule, per partition."""
    a, b = _store(client), _store(client)
    epoch_a = (await a.claim_partitions([3]))[3].epoch
    record = OutboxRecord("dead", None, b"{}")
    cp = PartitionCheckpoint({"inquiries": 10, "messages": 4}, [record])
    assert await a.save_partitions({3: (Owned(epoch_a, 1), cp)}) == {3: Outcome.OK}

    taken = (await b.claim_partitions([3]))[3]
    assert taken.marks == {"inquiries": 10, "messages": 4}
    assert taken.outbox == [record]
    late = PartitionCheckpoint({"inquiries": 99}, [])
    assert await a.save_partitions({3: (Owned(epoch_a, 2), late)}) == {3: Outcome.FENCED}
    assert (await b.claim_partitions([3]))[3].marks["inquiries"] == 10


async def test_large_writes_are_split_inside_the_script(client: Any) -> None:
    """Thousands of rows in one checkpoint (more than one call's arguments) all land."""
    store = _store(client)
    epoch = (await store.claim_shops([SHOP]))[SHOP].epoch
    buyers: dict[str, dict[str, Any] | None] = {f"b{i}": {"id": f"b{i}"} for i in range(2500)}
    delta = ShopDelta(meta=META, agents={}, buyers=buyers, seen=[])
    cp = ShopCheckpoint(delta, {}, [])
    assert await store.save_shops({SHOP: (Owned(epoch, 1), cp)}) == {SHOP: Outcome.OK}
    assert await client.hlen(store.key(SHOP, "buyers")) == 2500
    gone: dict[str, dict[str, Any] | None] = {f"b{i}": None for i in range(1, 2500)}
    delta = ShopDelta(meta=META, agents={}, buyers=gone, seen=[])
    cp = ShopCheckpoint(delta, {}, [])
    assert await store.save_shops({SHOP: (Owned(epoch, 2), cp)}) == {SHOP: Outcome.OK}
    assert await client.hkeys(store.key(SHOP, "buyers")) == [b"b0"]


async def test_scripts_are_loaded_again_after_redis_forgot_them(client: Any) -> None:
    """SCRIPT FLUSH (what a Redis restart does to the script cache) costs one retry."""
    store = _store(client)
    epoch = (await store.claim_shops([SHOP]))[SHOP].epoch
    await client.script_flush()
    write = {SHOP: (Owned(epoch, 1), _checkpoint("b1", 1, "x1"))}
    assert await store.save_shops(write) == {SHOP: Outcome.OK}
    assert await client.llen(store.key(SHOP, "outbox")) == 1
