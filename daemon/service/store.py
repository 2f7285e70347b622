"""Routing state in Redis: per-shop checkpoints with an outbox, per-partition watermarks, and
the owner epochs that fence an instance which lost a partition (contract §6 and 7).

Layout (P = `redis.key_prefix`, S = shop id, N = input partition number). Every key of a
shop carries the hash tag `{S}` and every key of a partition the tag `{N}`, so on a Redis
Cluster each lives on one slot and one script covers it:

    P:{S}:meta              hash   epoch, ckseq (the owner, see below), state -> the
                                   snapshot's meta part (JSON), offset:<topic> -> next
                                   input offset reflected (on the shop's home partition),
                                   partition -> that home partition (offsets counted on
                                   another one, before the partition count changed, are
                                   not used as the shop's floors)
    P:{S}:agents            hash   agent id -> row (JSON)
    P:{S}:buyers            hash   buyer id -> row (JSON)
    P:{S}:seen              list   recent event ids, oldest first (trimmed to the dedup capacity)
    P:{S}:outbox            list   outputs decided but not yet acknowledged by Kafka
    P:partition:{N}:mark    hash   epoch, ckseq, <topic> -> every record of partition N of
                                   that topic below it is reflected (the watermark: where
                                   a new owner starts reading), done:<topic> -> the first
                                   record not yet consumed (above the watermark while a
                                   shop is set aside; records of no owned shop below it
                                   are not rejected again)
    P:partition:{N}:outbox  list   outputs of partition N that belong to no configured shop
                                   (dead letters of unknown shops, undecodable records)

**Owners.** Taking a shop or a partition (`claim`) increments its `epoch` and reads its state
in one script: whoever claimed last owns it. Every write (`write`) is one script that runs
only if the stored epoch is still the writer's, so an instance that lost a partition without
noticing (a long pause, a rebalance it missed) changes nothing once the new owner has
claimed: its writes come back `FENCED`. Each write also carries the owner's checkpoint
number (`ckseq`); a write whose number is not above the stored one is `AGAIN` and changes
nothing, so a client that re-sends a script after a lost reply (the cluster client does)
cannot append an outbox or the seen ids twice. The scripts are in daemon.service.scripts.

A checkpoint writes the shops first and, in a second round trip, the watermarks of the
partitions whose shops all succeeded, so a watermark never runs ahead of a shop it covers,
whichever nodes hold them. A new owner claims the partitions before their shops, so a
fenced shop write is always followed by a fenced watermark write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from redis.exceptions import NoScriptError, RedisError

from daemon.core.snapshot import ROW_PARTS, ShopDelta, delta_ops, stored_snapshot
from daemon.service.failures import failure, failure_text
from daemon.service.scripts import CLAIM, WRITE, op, sha


class StoreError(RuntimeError):
    """Redis did not take (or give back) a checkpoint; the message says what failed, and
    `tls` whether it was the TLS handshake (a certificate not trusted, say), not an outage."""

    def __init__(self, message: str, *, tls: bool = False) -> None:
        super().__init__(message)
        self.tls = tls

    @classmethod
    def of(cls, what: str, exc: BaseException) -> StoreError:
        """`what` failed because of `exc`, worded by daemon.service.failures (`tls: ...`,
        `unreachable: ...`), not as redis-py says it (`network:ConnectionError`)."""
        return cls(f"{what}: {failure_text(exc)}", tls=failure(exc)[0] == "tls")


class Outcome(StrEnum):
    """What one fenced write did."""

    OK = "ok"
    AGAIN = "again"  # already written (a re-sent script): nothing changed
    FENCED = "fenced"  # another instance owns it now: nothing changed


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

    delta: ShopDelta | None = None
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset
    outbox: list[OutboxRecord] = field(default_factory=list)
    partition: int | None = None  # the input partition `offsets` count on
    first: dict[str, int] = field(default_factory=dict)  # topic -> first offset consumed


@dataclass(slots=True)
class PartitionCheckpoint:
    """What one batch changed in one partition: watermarks and shop-less outputs."""

    marks: dict[str, int] = field(default_factory=dict)  # topic -> watermark
    outbox: list[OutboxRecord] = field(default_factory=list)
    done: dict[str, int] = field(default_factory=dict)  # topic -> next offset consumed


@dataclass(frozen=True, slots=True)
class Owned:
    """The owner's token for a write: its epoch and the number of this checkpoint."""

    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class StoredShop:
    """A shop as Redis has it: the snapshot (`dump_shop` form) and its bookkeeping."""

    epoch: int
    snapshot: dict[str, Any] | None  # None: no state was ever written
    offsets: dict[str, int]
    outbox: list[OutboxRecord]
    partition: int | None = None  # where `offsets` count (None: written before it was kept)


@dataclass(frozen=True, slots=True)
class StoredPartition:
    """A partition as Redis has it: the owner epoch, watermarks and shop-less outbox."""

    epoch: int
    marks: dict[str, int]  # topic -> watermark
    outbox: list[OutboxRecord]
    done: dict[str, int]  # topic -> next offset consumed


class Store:
    """Checkpoints of a set of shops and partitions in one Redis or Redis Cluster (see the
    module docstring). `client` is a `redis.asyncio.Redis` or `RedisCluster`."""

    def __init__(self, client: Any, prefix: str, *, dedup_capacity: int) -> None:
        self.client = client
        self.prefix = prefix
        self.dedup_capacity = dedup_capacity

    def key(self, shop_id: str, part: str) -> str:
        """The key of one part of a shop's state."""
        return f"{self.prefix}:{{{shop_id}}}:{part}"

    def partition_key(self, partition: int, part: str) -> str:
        """The key of one part of a partition's state (`mark` or `outbox`)."""
        return f"{self.prefix}:partition:{{{partition}}}:{part}"

    def _shop_keys(self, shop_id: str) -> list[str]:
        return [self.key(shop_id, p) for p in ("meta", "agents", "buyers", "seen", "outbox")]

    def _partition_keys(self, partition: int) -> list[str]:
        return [self.partition_key(partition, "mark"), self.partition_key(partition, "outbox")]

    # -------------------------------------------------------------------------- claims

    async def claim_partitions(
        self, partitions: Iterable[int]
    ) -> dict[int, StoredPartition | StoreError]:
        """Become the owner of these partitions; their watermarks and shop-less outboxes
        (or, where the node holding one did not answer, the error)."""
        wanted = sorted(partitions)
        calls = [(CLAIM, self._partition_keys(p), ["list"]) for p in wanted]
        replies = await self._scripts(calls, "partitions not claimed", per_call=True)
        claimed: dict[int, StoredPartition | StoreError] = {}
        for partition, reply in zip(wanted, replies, strict=True):
            if isinstance(reply, Exception):
                claimed[partition] = StoreError.of("partition not claimed", reply)
                continue
            epoch, mark, outbox = reply
            fields = {k: int(v) for k, v in _pairs(mark).items() if k not in ("epoch", "ckseq")}
            marks = {k: v for k, v in fields.items() if not k.startswith("done:")}
            done = {k[5:]: v for k, v in fields.items() if k.startswith("done:")}
            claimed[partition] = StoredPartition(int(epoch), marks, _records(outbox), done)
        return claimed

    async def claim_shops(self, shop_ids: Iterable[str]) -> dict[str, StoredShop | StoreError]:
        """Become the owner of these shops; every stored part of each (or the error)."""
        wanted = list(shop_ids)
        kinds = ["hash", "hash", "list", "list"]
        calls = [(CLAIM, self._shop_keys(s), kinds) for s in wanted]
        replies = await self._scripts(calls, "shops not claimed", per_call=True)
        return {
            s: StoreError.of("shop not claimed", reply)
            if isinstance(reply, Exception)
            else _stored(*reply)
            for s, reply in zip(wanted, replies, strict=True)
        }

    # ------------------------------------------------------------------------- writing

    async def save_shops(
        self, shops: Mapping[str, tuple[Owned, ShopCheckpoint]]
    ) -> dict[str, Outcome | StoreError]:
        """Write each shop's checkpoint (one script per shop, one round trip in all)."""
        order = list(shops)
        calls = []
        for shop_id in order:
            owned, checkpoint = shops[shop_id]
            calls.append((WRITE, self._shop_keys(shop_id), self._shop_ops(owned, checkpoint)))
        return dict(zip(order, await self._writes(calls), strict=True))

    async def save_partitions(
        self, partitions: Mapping[int, tuple[Owned, PartitionCheckpoint]]
    ) -> dict[int, Outcome | StoreError]:
        """Write each partition's watermarks and shop-less outputs."""
        order = list(partitions)
        calls = []
        for partition in order:
            owned, checkpoint = partitions[partition]
            marks = [
                *checkpoint.marks.items(),
                *((f"done:{t}", o) for t, o in checkpoint.done.items()),
            ]
            ops = op("HSET", 1, [x for t, o in marks for x in (t, o)])
            ops += op("RPUSH", 2, [r.dump() for r in checkpoint.outbox])
            args = [owned.epoch, owned.seq, *ops]
            calls.append((WRITE, self._partition_keys(partition), args))
        return dict(zip(order, await self._writes(calls), strict=True))

    def _shop_ops(self, owned: Owned, checkpoint: ShopCheckpoint) -> list[Any]:
        meta: list[Any] = []
        for topic, offset in checkpoint.offsets.items():
            meta += [f"offset:{topic}", offset]
        if checkpoint.offsets and checkpoint.partition is not None:
            meta += ["partition", checkpoint.partition]
        ops: list[Any] = [owned.epoch, owned.seq]
        if checkpoint.delta is not None:  # the operations of delta_ops, for the script
            write = delta_ops(checkpoint.delta, dedup_capacity=self.dedup_capacity)
            meta += ["state", orjson.dumps(write.meta)]
            for index, part in enumerate(ROW_PARTS, start=2):  # the keys of _shop_keys
                rows = write.set_rows[part]
                ops += op("HSET", index, [x for i, r in rows.items() for x in (i, orjson.dumps(r))])
                ops += op("HDEL", index, write.delete_rows[part])
            ops += op("RPUSH", 4, write.append_seen)
            if write.keep_seen is not None:
                ops += op("LTRIM", 4, [-write.keep_seen, -1], always=True)
        ops += op("HSET", 1, meta)
        ops += op("RPUSH", 5, [r.dump() for r in checkpoint.outbox])
        return ops

    async def clear_outboxes(
        self, shops: Mapping[str, int], partitions: Mapping[int, int]
    ) -> dict[str | int, Outcome | StoreError]:
        """Forget outboxes whose every record Kafka has acknowledged (owner -> epoch)."""
        owners: list[str | int] = [*shops, *partitions]
        calls = [
            (WRITE, self._shop_keys(s)[:1] + self._shop_keys(s)[4:], [e, "-", "DEL", 2, 0])
            for s, e in shops.items()
        ]
        calls += [
            (WRITE, self._partition_keys(p), [e, "-", "DEL", 2, 0]) for p, e in partitions.items()
        ]
        return dict(zip(owners, await self._writes(calls), strict=True))

    # ------------------------------------------------------------------------- reading

    async def read_meta(self, shop_id: str) -> dict[str, Any] | None:
        """A shop's stored meta part (daemon.core.snapshot: its clock, what its candidates
        learned, its grey tests), read without claiming the shop, so the owner goes on
        undisturbed (`fenliu experiment report`); None when no state was ever written."""
        try:
            raw = await self.client.hget(self.key(shop_id, "meta"), "state")
        except (RedisError, OSError) as exc:
            raise StoreError.of("checkpoint not read", exc) from exc
        if raw is None:
            return None
        meta: dict[str, Any] = orjson.loads(raw)
        return meta

    async def ping(self) -> None:
        """StoreError unless Redis answers."""
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            raise StoreError.of("Redis", exc) from exc

    # ------------------------------------------------------------------------ scripts

    async def _writes(
        self, calls: list[tuple[str, list[str], list[Any]]]
    ) -> list[Outcome | StoreError]:
        """Run fenced writes; each one's outcome, or the error that stopped it."""
        if not calls:
            return []
        replies = await self._scripts(calls, "checkpoint not written", per_call=True)
        out: list[Outcome | StoreError] = []
        for reply in replies:
            if isinstance(reply, Exception):
                out.append(StoreError.of("checkpoint not written", reply))
            else:
                out.append(Outcome(reply.decode() if isinstance(reply, bytes) else reply))
        return out

    async def _scripts(
        self,
        calls: Sequence[tuple[str, list[str], list[Any]]],
        what: str,
        *,
        per_call: bool = False,
    ) -> list[Any]:
        """Run scripts in one pipeline, by digest; a node that does not know a script yet
        (new, or restarted: the cache is not kept) runs it from its text, which caches it.
        With `per_call`, a call that failed has its error as its reply (a Redis Cluster
        node down); StoreError when every call failed, or any did without `per_call`."""
        if not calls:
            return []
        replies = await self._pipeline([("EVALSHA", sha(src), k, a) for src, k, a in calls], what)
        again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if again:
            texts = [("EVAL", calls[i][0], calls[i][1], calls[i][2]) for i in again]
            for i, reply in zip(again, await self._pipeline(texts, what), strict=True):
                replies[i] = reply
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed and (not per_call or len(failed) == len(replies)):
            raise StoreError.of(what, failed[0])
        return replies

    async def _pipeline(
        self, commands: list[tuple[str, str, list[str], list[Any]]], what: str
    ) -> list[Any]:
        """One pipeline of EVAL/EVALSHA commands; if the client gives up on the whole
        pipeline (a cluster node it cannot reach), the commands one by one."""
        pipe = self.client.pipeline(transaction=False)
        for command, script, keys, args in commands:
            pipe.execute_command(command, script, len(keys), *keys, *args)
        try:
            return list(await pipe.execute(raise_on_error=False))
        except (RedisError, OSError) as exc:
            if len(commands) == 1:
                raise StoreError.of(what, exc) from exc
        replies: list[Any] = []
        for command, script, keys, args in commands:
            try:
                replies.append(
                    await self.client.execute_command(command, script, len(keys), *keys, *args)
                )
            except (RedisError, OSError) as exc:
                replies.append(exc)
        return replies


def _pairs(flat: Sequence[bytes]) -> dict[str, bytes]:
    """A script's HGETALL reply (a flat list) as a dict with text keys."""
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


def _records(raw: Sequence[bytes]) -> list[OutboxRecord]:
    return [OutboxRecord.load(r) for r in raw]


def _stored(
    epoch: int,
    meta_flat: list[bytes],
    agents: list[bytes],
    buyers: list[bytes],
    seen: list[bytes],
    outbox: list[bytes],
) -> StoredShop:
    meta = _pairs(meta_flat)
    offsets = {
        k.removeprefix("offset:"): int(v) for k, v in meta.items() if k.startswith("offset:")
    }
    snapshot = None
    if "state" in meta:
        snapshot = stored_snapshot(
            orjson.loads(meta["state"]),
            {k: orjson.loads(v) for k, v in _pairs(agents).items()},
            {k: orjson.loads(v) for k, v in _pairs(buyers).items()},
            [s.decode() for s in seen],
        )
    partition = int(meta["partition"]) if "partition" in meta else None
    return StoredShop(int(epoch), snapshot, offsets, _records(outbox), partition)
