"""Two live owners of one shop (daemon.service.checkpoint over a real Redis): the way the fleet's
KeyError came about, and the fencing and quarantine that end it.

The scenario of issue 10, without Kafka: instance A owns the shop; instance B claims it
(a rebalance A has not noticed yet: Tansu completes a rebalance without waiting for a
member that is slow to rejoin, and a paused process misses it entirely) and decides on;
A, still believing it owns the shop, checkpoints a batch decided on its stale state.
Before fencing, A's rows and B's rows mixed in Redis — a buyer in session with an agent
whose row does not list the session — and every later owner died restoring that shop.
"""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis

from daemon.core.config import ShopConfig
from daemon.core.consistency import consistency_problems
from daemon.core.engine import Engine
from daemon.service.checkpoint import Checkpoint
from daemon.service.checkpoint_types import Batch, Saved
from daemon.service.store import OutboxRecord, Store
from topics.codec import encode
from topics.events import (
    AgentStatus,
    AgentStatusChanged,
    BuyerInquired,
    InputEvent,
    MessageSent,
)

SHOP = "s1"
CONFIG = ShopConfig.model_validate(
    tomllib.loads(
        'id = "s1"\n[queue]\nenabled = true\ndefault_cap = 2\nsession_timeout = "60s"\n'
        '[[agents]]\nid = "a1"\n[[agents]]\nid = "a2"\n'
        '[[groups]]\nname = "all"\nagents = ["a1", "a2"]\n'
    )
)
TOPIC = "in"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis_client = aioredis.Redis.from_url(redis_url)
    try:
        yield redis_client
    finally:
        await redis_client.aclose()


def _instance(client: aioredis.Redis) -> Checkpoint:
    engine = Engine({SHOP: CONFIG}, track=True)
    return Checkpoint(engine, Store(client, "t", dedup_capacity=1000))


async def _step(cp: Checkpoint, offset: int, events: list[InputEvent], now: int) -> Saved:
    """What the service does with one batch of partition 0 (one topic)."""
    batch = Batch()
    for i, event in enumerate(events):
        cp.consumed(batch, event.shop_id, TOPIC, 0, offset + i)
        for out in cp.engine.handle(event, now):
            record = OutboxRecord("out", SHOP.encode(), encode(out))
            cp.output(batch, cp.owner_of(out.shop_id, 0), record)
    return await cp.save(batch)


def _online(n: int, agent: str) -> AgentStatusChanged:
    return AgentStatusChanged(f"e{n}", SHOP, 1000 + n, agent, AgentStatus.ONLINE)


async def test_a_stale_owner_is_fenced_and_redis_stays_consistent(
    client: aioredis.Redis,
) -> None:
    a, b = _instance(client), _instance(client)
    await a.restore([0], 1)
    saved = await _step(
        a, 0, [_online(1, "a1"), _online(2, "a2"), BuyerInquired("e3", SHOP, 1003, "b1")], 1003
    )
    assert saved.lost == set() and len(saved.sends) == 1, "b1 assigned by A"

    restored = await b.restore([0], 1)  # B takes over; A does not know yet
    assert restored.shops == 1 and restored.set_aside == {}
    agent = b.engine.shop(SHOP).buyers["b1"].session
    assert agent is not None
    offline = AgentStatusChanged("e4", SHOP, 1004, agent.agent_id, AgentStatus.OFFLINE)
    saved = await _step(b, 3, [offline, BuyerInquired("e5", SHOP, 1005, "b2")], 1005)
    assert saved.lost == set() and saved.sends, "B closes b1's session and routes b2"

    # A's late batch, decided on A's stale state (b1 still in session there)
    late = [MessageSent("e6", SHOP, 1006, "b1", "buyer"), BuyerInquired("e7", SHOP, 1007, "b3")]
    saved = await _step(a, 5, late, 1007)
    assert saved.lost == {0}, "A learns it lost the partition"
    assert saved.sends == [], "nothing A decided is published"
    assert a.held.partition_of == {} and a.engine.shop(SHOP).buyers == {}, "A dropped the shop"

    c = _instance(client)
    await c.restore([0], 1)
    shop = c.engine.shop(SHOP)
    assert consistency_problems(shop) == []
    assert "b3" not in shop.buyers, "A's late decision never reached Redis"
    assert shop.buyers["b1"].session is None, "B's close of b1 stands"
    assert b.engine.snapshot_shop(SHOP) == c.engine.snapshot_shop(SHOP), "Redis is B's state"


async def test_inconsistent_stored_state_is_quarantined_and_holds_the_watermark(
    client: aioredis.Redis,
) -> None:
    """A shop whose rows disagree (the fleet bug's leftovers) is not served; its records from
    the last consistent offset on are held; other shops are untouched."""
    a = _instance(client)
    await a.restore([0], 1)
    await _step(a, 0, [_online(1, "a1"), BuyerInquired("e2", SHOP, 1002, "b1")], 1002)
    store = a.store
    await client.hset(store.key(SHOP, "agents"), "a1", b'{"id":"a1","ordinal":0,"status":'
                      b'"online","sessions":[]}')  # fmt: skip  # a1 forgot b1

    b = _instance(client)
    restored = await b.restore([0], 1)
    assert list(restored.set_aside) == [SHOP]
    assert "which does not list the session" in restored.set_aside[SHOP]
    assert SHOP in b.held.quarantined and b.engine.shop(SHOP).buyers == {}
    assert b.held.quarantined[SHOP].holds == {TOPIC: 2}, "held where the stored state ends"

    batch = Batch()
    b.consumed(batch, SHOP, TOPIC, 0, 2)  # a later record of the shop: skipped, not lost
    b.consumed(batch, "other", TOPIC, 0, 3)
    await b.save(batch)
    marks = (await b.store.claim_partitions([0]))[0].marks
    assert marks == {TOPIC: 2}, "the watermark stays at the quarantined shop's first record"


async def test_a_shop_moved_by_more_partitions_keeps_its_state_and_reads_its_new_home(
    client: aioredis.Redis,
) -> None:
    """Partitions added to the input topics (1 -> 4) move s1 from partition 0 to 1: its new
    owner restores its sessions from Redis, and the offsets it checkpointed on partition 0
    do not skip the first records of partition 1 (they used to: 2 records lost)."""
    a = _instance(client)
    await a.restore([0], 1)
    await _step(a, 0, [_online(1, "a1"), BuyerInquired("e2", SHOP, 1002, "b1")], 1002)
    assert a.held.floor(SHOP, TOPIC) == 2

    b = _instance(client)
    restored = await b.restore(range(4), 4)
    assert b.held.home(SHOP) == 1 and restored.shops == 1 and not restored.set_aside
    assert b.engine.shop(SHOP).buyers["b1"].session is not None, "the session follows the shop"
    assert not b.seen_before(SHOP, TOPIC, 1, 0), "partition 1's first record is new to s1"
    assert b.held.floor(SHOP, TOPIC) is None

    batch = Batch()
    b.consumed(batch, SHOP, TOPIC, 1, 0)
    outputs = b.engine.handle(BuyerInquired("e2", SHOP, 1003, "b1"), 1003)  # a retry of e2
    assert outputs == [], "recognised by event id, not applied twice"
    await b.save(batch)
    c = _instance(client)
    await c.restore(range(4), 4)
    assert c.held.floor(SHOP, TOPIC) == 1, "offsets now counted on the new home"


# ------------------------------------------------- a newer version's rows (rolling deploys)


async def _stored(client: aioredis.Redis, store: Store) -> dict[str, object]:
    """The shop's rows and its meta part as Redis holds them (the owner's epoch left out)."""
    meta = await client.hget(store.key(SHOP, "meta"), "state")
    agents = await client.hgetall(store.key(SHOP, "agents"))
    buyers = await client.hgetall(store.key(SHOP, "buyers"))
    return {"meta": meta, "agents": agents, "buyers": buyers}


async def _rewrite(
    client: aioredis.Redis, store: Store, part: str, row_id: str, **add: object
) -> None:
    """Change one stored row (or the meta part, `part` "meta") as a newer version would."""
    key, field = store.key(SHOP, part), "state" if part == "meta" else row_id
    row = orjson.loads(await client.hget(key, field))
    row.update(add)
    await client.hset(key, field, orjson.dumps(row))


async def test_a_shop_a_newer_version_stored_in_a_format_this_one_does_not_read_is_refused(
    client: aioredis.Redis,
) -> None:
    """During a rollback the older daemon takes a shop the newer one stored in shop format 5:
    it sets the shop aside, saying why, holds its records and writes nothing to its rows; the
    shop stays whole for a version that reads it."""
    a = _instance(client)
    await a.restore([0], 1)
    await _step(a, 0, [_online(1, "a1"), BuyerInquired("e2", SHOP, 1002, "b1")], 1002)
    await _rewrite(client, a.store, "meta", "", format=5, writer=5, arms=["x"])
    await _rewrite(client, a.store, "buyers", "b1", format=5, owed_since=1002)
    before = await _stored(client, a.store)

    b = _instance(client)
    restored = await b.restore([0], 1)
    cause = restored.set_aside[SHOP]
    assert "checkpoint format 5, which this Fenliu (format 4) does not read" in cause
    assert b.held.quarantined[SHOP].holds == {TOPIC: 2}
    batch = Batch()
    b.consumed(batch, SHOP, TOPIC, 0, 2)  # a later record of the shop: held, not lost
    await b.save(batch)
    assert await _stored(client, b.store) == before, "nothing of the shop was written"
    assert (await b.store.claim_partitions([0]))[0].marks == {TOPIC: 2}


async def test_fields_a_newer_version_stored_survive_older_owners_as_the_shop_moves(
    client: aioredis.Redis,
) -> None:
    """A shop a newer version stored in a format this one reads, with fields of its own in
    the meta part, an agent row and a buyer row: B takes it from a live A and changes both
    rows; C takes it from B. The newer fields are still there, and the shop format with
    them, for the newer version to read back."""
    a = _instance(client)
    await a.restore([0], 1)
    await _step(a, 0, [_online(1, "a1"), BuyerInquired("e2", SHOP, 1002, "b1")], 1002)
    await _rewrite(client, a.store, "meta", "", format=3, writer=5, arms=["x"])
    await _rewrite(client, a.store, "agents", "a1", format=5, replies=[3, 1])
    await _rewrite(client, a.store, "buyers", "b1", format=5, owed_since=1002)

    b = _instance(client)
    assert (await b.restore([0], 1)).set_aside == {}
    closing = AgentStatusChanged("e3", SHOP, 1003, "a1", AgentStatus.OFFLINE)
    saved = await _step(b, 2, [closing], 1003)  # b1's session closes: both rows change
    assert saved.lost == set() and saved.sends

    c = _instance(client)
    await c.restore([0], 1)
    stored = await _stored(client, c.store)
    meta = orjson.loads(stored["meta"])
    agent = orjson.loads(stored["agents"][b"a1"])
    buyer = orjson.loads(stored["buyers"][b"b1"])
    assert (meta["format"], meta["writer"], meta["arms"]) == (3, 4, ["x"])
    assert (agent["format"], agent["replies"], agent["status"]) == (4, [3, 1], "offline")
    assert (buyer["format"], buyer["owed_since"]) == (4, 1002)
    assert "session" not in buyer and buyer["last"][0] == "a1", "B's change is there too"
    assert c.engine.snapshot_shop(SHOP) == b.engine.snapshot_shop(SHOP)
