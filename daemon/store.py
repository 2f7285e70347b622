"""Routing state in Redis: per-shop checkpoints with an outbox, and input watermarks.

Layout (P = `redis.key_prefix`, S = shop id; every key of a shop carries the hash tag
`{S}`, so a Redis Cluster keeps a shop on one slot and one MULTI/EXEC covers it):

    P:{S}:meta      hash   state -> the snapshot's meta part (JSON), partition -> input
                           partition number, offset:<topic> -> next input offset reflected
    P:{S}:agents    hash   agent id -> row (JSON)
    P:{S}:buyers    hash   buyer id -> row (JSON)
    P:{S}:seen      list   recent event ids, oldest first (trimmed to the dedup capacity)
    P:{S}:outbox    list   outputs decided but not yet acknowledged by Kafka
    P:p<N>:outbox   list   outputs of partition N that belong to no configured shop
                           (dead letters of unknown shops and undecodable records)
    P:watermarks    hash   <topic>:<partition> -> every record below it is reflected

One checkpoint is one round trip: a MULTI/EXEC per changed shop (its changed rows, new
event ids, offsets and outbox), then the watermarks of the batch. A watermark is written
after its shops' transactions in the same ordered pipeline, so whatever Redis kept (AOF
replays in order), a watermark never runs ahead of the shops it covers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from daemon.core.snapshot import META_FIELDS, ShopDelta


class StoreError(RuntimeError):
    """Redis did not take (or give back) a checkpoint; the message says what failed."""


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One output as it will be produced: topic, key and the encoded value."""

    topic: str
    key: bytes | None
    value: bytes

    def dump(self) -> bytes:
        """The record as stored in an outbox list."""
        key = None if self.key is None else self.key.decode()
        return orjson.dumps([self.topic, key, self.value.decode()])

    @classmethod
    def load(cls, raw: bytes) -> OutboxRecord:
        """A record from an outbox list."""
        topic, key, value = orjson.loads(raw)
        return cls(topic, None if key is None else key.encode(), value.encode())


@dataclass(slots=True)
class ShopCheckpoint:
    """What one batch changed in one shop."""

    partition: int | None
    delta: ShopDelta | None = None
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset
    outbox: list[OutboxRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoredShop:
    """A shop as Redis has it: the snapshot (`dump_shop` form) and its bookkeeping."""

    snapshot: dict[str, Any] | None  # None: only an outbox or offsets were ever written
    partition: int | None
    offsets: dict[str, int]
    outbox: list[OutboxRecord]


class Store:
    """Checkpoints of a set of shops in one Redis (see the module docstring)."""

    def __init__(self, client: aioredis.Redis, prefix: str, *, dedup_capacity: int) -> None:
        self.client = client
        self.prefix = prefix
        self.dedup_capacity = dedup_capacity

    def key(self, shop_id: str, part: str) -> str:
        """The key of one part of a shop's state."""
        return f"{self.prefix}:{{{shop_id}}}:{part}"

    def partition_outbox(self, partition: int) -> str:
        """The outbox of outputs of `partition` that belong to no configured shop."""
        return f"{self.prefix}:p{partition}:outbox"

    @property
    def watermarks_key(self) -> str:
        """The hash of input watermarks."""
        return f"{self.prefix}:watermarks"

    # ------------------------------------------------------------------------- writing

    async def save(
        self,
        shops: Mapping[str, ShopCheckpoint],
        orphans: Mapping[int, list[OutboxRecord]],
        watermarks: Mapping[tuple[str, int], int],
    ) -> None:
        """Write one batch's checkpoint in one round trip; StoreError if any part failed."""
        pipe = self.client.pipeline(transaction=False)
        execs: list[int] = []
        for shop_id, checkpoint in shops.items():
            pipe.execute_command("MULTI")
            self._queue_shop(pipe, shop_id, checkpoint)
            pipe.execute_command("EXEC")
            execs.append(len(pipe.command_stack) - 1)
        for partition, records in orphans.items():
            if records:
                pipe.rpush(self.partition_outbox(partition), *(r.dump() for r in records))
        if watermarks:
            marks = {f"{topic}:{p}": offset for (topic, p), offset in watermarks.items()}
            pipe.hset(self.watermarks_key, mapping=marks)  # type: ignore[arg-type]
        if not pipe.command_stack:
            return
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            raise StoreError(f"checkpoint not written: {exc}") from exc
        failed = [r for r in replies if isinstance(r, Exception)]
        failed += [replies[i] for i in execs if not isinstance(replies[i], list)]
        if failed:
            raise StoreError(f"checkpoint not written: {failed[0]!r}")

    def _queue_shop(self, pipe: Any, shop_id: str, checkpoint: ShopCheckpoint) -> None:
        meta: dict[str, Any] = {}
        if checkpoint.partition is not None:
            meta["partition"] = checkpoint.partition
        meta.update({f"offset:{t}": o for t, o in checkpoint.offsets.items()})
        delta = checkpoint.delta
        if delta is not None:
            meta["state"] = orjson.dumps(delta.meta)
            for part, rows in (("agents", delta.agents), ("buyers", delta.buyers)):
                written = {i: orjson.dumps(row) for i, row in rows.items() if row is not None}
                gone = [i for i, row in rows.items() if row is None]
                if written:
                    pipe.hset(self.key(shop_id, part), mapping=written)
                if gone:
                    pipe.hdel(self.key(shop_id, part), *gone)
            if delta.seen:
                seen = self.key(shop_id, "seen")
                pipe.rpush(seen, *delta.seen)
                pipe.ltrim(seen, -self.dedup_capacity, -1)
        pipe.hset(self.key(shop_id, "meta"), mapping=meta)
        if checkpoint.outbox:
            pipe.rpush(self.key(shop_id, "outbox"), *(r.dump() for r in checkpoint.outbox))

    async def clear_outboxes(self, shop_ids: Iterable[str], partitions: Iterable[int]) -> None:
        """Forget outboxes whose every record Kafka has acknowledged."""
        keys = [self.key(s, "outbox") for s in shop_ids]
        keys += [self.partition_outbox(p) for p in partitions]
        if keys:
            try:
                await self.client.delete(*keys)
            except (RedisError, OSError) as exc:
                raise StoreError(f"outboxes not cleared: {exc}") from exc

    # ------------------------------------------------------------------------- reading

    async def partitions_of(self, shop_ids: list[str]) -> dict[str, int]:
        """The input partition each shop was last checkpointed from (shops never seen: absent)."""
        pipe = self.client.pipeline(transaction=False)
        for shop_id in shop_ids:
            pipe.hget(self.key(shop_id, "meta"), "partition")
        replies = await self._run(pipe, "partitions not read")
        return {s: int(p) for s, p in zip(shop_ids, replies, strict=True) if p is not None}

    async def load(self, shop_ids: list[str]) -> dict[str, StoredShop]:
        """Every stored part of these shops, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for shop_id in shop_ids:
            pipe.hgetall(self.key(shop_id, "meta"))
            pipe.hgetall(self.key(shop_id, "agents"))
            pipe.hgetall(self.key(shop_id, "buyers"))
            pipe.lrange(self.key(shop_id, "seen"), 0, -1)
            pipe.lrange(self.key(shop_id, "outbox"), 0, -1)
        replies = await self._run(pipe, "shops not read")
        loaded = {}
        for i, shop_id in enumerate(shop_ids):
            meta, agents, buyers, seen, outbox = replies[5 * i : 5 * i + 5]
            loaded[shop_id] = _stored(meta, agents, buyers, seen, outbox)
        return loaded

    async def orphans(self, partitions: list[int]) -> dict[int, list[OutboxRecord]]:
        """The shop-less outboxes of these partitions."""
        pipe = self.client.pipeline(transaction=False)
        for partition in partitions:
            pipe.lrange(self.partition_outbox(partition), 0, -1)
        replies = await self._run(pipe, "outboxes not read")
        return {
            p: [OutboxRecord.load(raw) for raw in reply]
            for p, reply in zip(partitions, replies, strict=True)
        }

    async def watermarks(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The stored watermarks of these topic-partitions (absent: never checkpointed)."""
        wanted = list(partitions)
        if not wanted:
            return {}
        try:
            values = await self.client.hmget(self.watermarks_key, [f"{t}:{p}" for t, p in wanted])
        except (RedisError, OSError) as exc:
            raise StoreError(f"watermarks not read: {exc}") from exc
        return {tp: int(v) for tp, v in zip(wanted, values, strict=True) if v is not None}

    async def ping(self) -> None:
        """StoreError unless Redis answers."""
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unreachable: {exc}") from exc

    async def _run(self, pipe: Any, what: str) -> list[Any]:
        try:
            return list(await pipe.execute())
        except (RedisError, OSError) as exc:
            raise StoreError(f"{what}: {exc}") from exc


def _stored(
    meta: dict[bytes, bytes],
    agents: dict[bytes, bytes],
    buyers: dict[bytes, bytes],
    seen: list[bytes],
    outbox: list[bytes],
) -> StoredShop:
    partition = int(meta[b"partition"]) if b"partition" in meta else None
    offsets = {
        k.decode().removeprefix("offset:"): int(v)
        for k, v in meta.items()
        if k.startswith(b"offset:")
    }
    snapshot = None
    if b"state" in meta:
        state = orjson.loads(meta[b"state"])
        snapshot = {name: state[name] for name in META_FIELDS}
        snapshot["agents"] = {k.decode(): orjson.loads(v) for k, v in agents.items()}
        snapshot["buyers"] = {k.decode(): orjson.loads(v) for k, v in buyers.items()}
        snapshot["seen"] = [s.decode() for s in seen]
    records = [OutboxRecord.load(raw) for raw in outbox]
    return StoredShop(snapshot, partition, offsets, records)
