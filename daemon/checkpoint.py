"""Bookkeeping between the engine and the store: what one batch checkpoints, what a restore
brings back, which shops this instance owns and which it has set aside (CONTRACT 6 and 7).

The service owns the I/O order — apply a batch, `Checkpoint.save`, then produce what `save`
returns — and this module owns the facts: each shop's home partition (`murmur2(key) mod
partitions`, CONTRACT 1), the owner epochs and checkpoint numbers that fence this instance
once another has claimed a shop or partition (daemon.store), the offsets each shop's stored
state reflects (records below them are skipped after a restore), which outboxes hold
records Kafka has not acknowledged yet, and the quarantined shops.

**Quarantine.** A shop whose engine failed unexpectedly, or whose stored state failed its
consistency check on restore, is set aside: its in-memory state is dropped, the outputs of
its unsaved batch are not sent, its later records are skipped, and the watermark of its
partition is held at its first record not reflected in its stored state. Nothing of it is
lost: a restore (a restart, a reload, or the partition moving) reads those records again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2

from daemon.core.consistency import consistency_problems
from daemon.core.engine import Engine
from daemon.core.snapshot import SnapshotError
from daemon.store import (
    OutboxRecord,
    Outcome,
    Owned,
    PartitionCheckpoint,
    ShopCheckpoint,
    Store,
    StoreError,
)

Owner = str | int  # a shop id, or the partition number of shop-less outputs
_NO_HOLD = 2**63


def _bump(owned: Owned) -> Owned:
    """The owner's token for its next checkpoint."""
    return Owned(owned.epoch, owned.seq + 1)


def home_partition(key: bytes, partitions: int) -> int:
    """Where the Java client's default partitioner (and aiokafka's) puts a record key."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(slots=True)
class Batch:
    """One batch in the making: its outputs in decision order and what it consumed."""

    sends: list[tuple[Owner, OutboxRecord]] = field(default_factory=list)
    shops: dict[str, ShopCheckpoint] = field(default_factory=dict)
    partitions: dict[int, PartitionCheckpoint] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Saved:
    """What a checkpoint wrote: the records to produce, and the partitions found taken by
    another instance (their shops are dropped here; the service stops consuming them)."""

    sends: list[OutboxRecord]
    lost: set[int]


@dataclass(slots=True)
class Quarantine:
    """Why a shop is set aside, and where its partition's watermarks are held per topic."""

    cause: str
    holds: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restore brought back."""

    resend: list[OutboxRecord]  # outbox records to produce again, then `acknowledged`
    shops: int  # shops that had state
    marks: dict[tuple[str, int], int]  # (topic, partition) -> watermark to seek to
    quarantined: dict[str, str]  # shop -> why its stored state was not served


class Checkpoint:
    """Checkpoints of the shops of the partitions this instance owns."""

    def __init__(self, engine: Engine, store: Store) -> None:
        self.engine = engine
        self.store = store
        self.partitions = 0  # input partition count, known from the first restore
        self.partition_of: dict[str, int] = {}  # owned shops -> home partition
        self.shop_owner: dict[str, Owned] = {}  # epoch and last checkpoint number
        self.partition_owner: dict[int, Owned] = {}
        self.floors: dict[tuple[str, str], int] = {}  # (shop, topic) -> first new offset
        self.quarantined: dict[str, Quarantine] = {}
        self.unacked_shops: set[str] = set()
        self.unacked_partitions: set[int] = set()
        self.abandoned = False  # deliveries given up on: outboxes keep them until a restore
        self._homes: dict[str, int] = {}

    def home(self, shop_id: str) -> int:
        """The partition a shop's records belong on (CONTRACT 1)."""
        home = self._homes.get(shop_id)
        if home is None:
            home = self._homes[shop_id] = home_partition(shop_id.encode(), self.partitions)
        return home

    # --------------------------------------------------------------------------- batches

    def seen_before(self, shop_id: str | None, topic: str, offset: int) -> bool:
        """Whether a record is already reflected in its shop's restored state."""
        floor = self.floors.get((shop_id or "", topic))
        return floor is not None and offset < floor

    def consumed(
        self, batch: Batch, shop_id: str | None, topic: str, part: int, offset: int
    ) -> None:
        """Note a consumed record (applied, rejected, skipped or set aside)."""
        self._partition(batch, part).marks[topic] = offset + 1
        if shop_id is None or shop_id not in self.partition_of:
            return
        quarantine = self.quarantined.get(shop_id)
        if quarantine is not None:
            if topic not in quarantine.holds:
                quarantine.holds[topic] = min(self.floors.get((shop_id, topic), offset), offset)
            return
        cp = self._shop(batch, shop_id)
        cp.first.setdefault(topic, offset)
        cp.offsets[topic] = offset + 1

    def output(self, batch: Batch, owner: Owner, record: OutboxRecord) -> None:
        """Add an output to the batch, in the outbox of its shop (or of its partition)."""
        batch.sends.append((owner, record))
        if isinstance(owner, str):
            self._shop(batch, owner).outbox.append(record)
        else:
            self._partition(batch, owner).outbox.append(record)

    def owner_of(self, shop_id: str | None, part: int | None) -> Owner:
        """Whose outbox an output goes to: its shop's if this instance owns the shop, else
        its input partition's (timers fire only in owned shops)."""
        if shop_id is not None and shop_id in self.partition_of:
            return shop_id
        if part is None:
            raise RuntimeError(f"output of shop {shop_id!r} whose partition is unknown")
        return part

    def _shop(self, batch: Batch, shop_id: str) -> ShopCheckpoint:
        cp = batch.shops.get(shop_id)
        if cp is None:
            cp = batch.shops[shop_id] = ShopCheckpoint(self.partition_of[shop_id])
        return cp

    @staticmethod
    def _partition(batch: Batch, part: int) -> PartitionCheckpoint:
        cp = batch.partitions.get(part)
        if cp is None:
            cp = batch.partitions[part] = PartitionCheckpoint()
        return cp

    def quarantine(self, shop_id: str, cause: str, batch: Batch | None = None) -> None:
        """Set a shop aside (see the module docstring): drop its state and the unsaved part
        of `batch`, and hold its partition's watermarks at its first unsaved record."""
        self.engine.reset_shop(shop_id)
        quarantine = self.quarantined.setdefault(shop_id, Quarantine(cause))
        if batch is None:
            return
        cp = batch.shops.pop(shop_id, None)
        if cp is not None:
            for topic, first in cp.first.items():
                floor = self.floors.get((shop_id, topic), first)
                quarantine.holds.setdefault(topic, min(floor, first))
        batch.sends = [(o, r) for o, r in batch.sends if o != shop_id]

    async def save(self, batch: Batch) -> Saved:
        """Write the engine's changes with the batch's offsets and outboxes (StoreError);
        a shop or partition another instance has claimed is fenced and comes back lost."""
        for shop_id, delta in self.engine.take_deltas().items():
            if shop_id in self.partition_of and shop_id not in self.quarantined:
                self._shop(batch, shop_id).delta = delta
        lost = await self._save_shops(batch.shops)
        lost |= await self._save_partitions(
            {p: cp for p, cp in batch.partitions.items() if p not in lost}
        )
        if lost:
            self.release(lost)
        sends = [  # a lost partition's shops were released: neither is sent
            record
            for owner, record in batch.sends
            if (owner in self.partition_of if isinstance(owner, str) else owner not in lost)
        ]
        return Saved(sends, lost)

    async def _save_shops(self, shops: dict[str, ShopCheckpoint]) -> set[int]:
        """Write the shops' checkpoints; the partitions of those found fenced."""
        writes = {s: (_bump(self.shop_owner[s]), cp) for s, cp in shops.items()}
        lost: set[int] = set()
        for shop_id, outcome in (await self.store.save_shops(writes)).items():
            if isinstance(outcome, StoreError):
                raise outcome
            if outcome is Outcome.FENCED:
                lost.add(self.partition_of[shop_id])
                continue
            self.shop_owner[shop_id] = writes[shop_id][0]
            cp = shops[shop_id]
            self.floors.update({(shop_id, t): o for t, o in cp.offsets.items()})
            if cp.outbox:
                self.unacked_shops.add(shop_id)
        return lost

    async def _save_partitions(self, partitions: dict[int, PartitionCheckpoint]) -> set[int]:
        """Write the partitions' watermarks (held for quarantined shops) and shop-less
        outboxes; the partitions found fenced."""
        writes = {}
        for part, cp in partitions.items():
            if part in self.partition_owner:
                cp.marks = {t: min(m, self._held(part, t)) for t, m in cp.marks.items()}
                writes[part] = (_bump(self.partition_owner[part]), cp)
        lost: set[int] = set()
        for part, outcome in (await self.store.save_partitions(writes)).items():
            if isinstance(outcome, StoreError):
                raise outcome
            if outcome is Outcome.FENCED:
                lost.add(part)
                continue
            self.partition_owner[part] = writes[part][0]
            if partitions[part].outbox:
                self.unacked_partitions.add(part)
        return lost

    def _held(self, part: int, topic: str) -> int:
        """The lowest watermark hold of a quarantined shop of `part` on `topic` (or a value
        above any offset when there is none)."""
        holds = [
            q.holds[topic]
            for shop_id, q in self.quarantined.items()
            if topic in q.holds and self.partition_of.get(shop_id) == part
        ]
        return min(holds, default=_NO_HOLD)

    async def acknowledged(self) -> None:
        """Kafka acknowledged every record sent so far: empty their outboxes."""
        if self.abandoned:
            return
        shops = {s: self.shop_owner[s].epoch for s in self.unacked_shops if s in self.shop_owner}
        parts = {
            p: self.partition_owner[p].epoch
            for p in self.unacked_partitions
            if p in self.partition_owner
        }
        for outcome in (await self.store.clear_outboxes(shops, parts)).values():
            if isinstance(outcome, StoreError):
                raise outcome  # a fenced clear changed nothing: the new owner sends them
        self.unacked_shops.clear()
        self.unacked_partitions.clear()

    # -------------------------------------------------------------------------- restore

    async def restore(self, partitions: Iterable[int], partition_count: int) -> Restored:
        """Claim `partitions` and their shops and load them into a reset engine (StoreError).

        Partitions are claimed before their shops (daemon.store says why). A shop whose
        stored state does not load or fails its consistency check is quarantined.
        """
        owned = sorted(set(partitions))
        engine = self.engine
        for shop_id in list(engine.shops):
            engine.reset_shop(shop_id)
        if partition_count != self.partitions:
            self.partitions, self._homes = partition_count, {}
        for bookkeeping in (self.partition_of, self.shop_owner, self.partition_owner):
            bookkeeping.clear()
        self.floors.clear()
        self.quarantined.clear()
        self.unacked_shops.clear()
        self.unacked_partitions.clear()
        self.abandoned = False
        stored_parts = await self.store.claim_partitions(owned)
        mine = [s for s in engine.shops if self.home(s) in set(owned)]
        stored_shops = await self.store.claim_shops(mine)
        resend: list[OutboxRecord] = []
        marks: dict[tuple[str, int], int] = {}
        for part, stored_part in stored_parts.items():
            self.partition_owner[part] = Owned(stored_part.epoch, 0)
            marks.update({(topic, part): mark for topic, mark in stored_part.marks.items()})
            if stored_part.outbox:
                resend.extend(stored_part.outbox)
                self.unacked_partitions.add(part)
        restored, problems = 0, {}
        for shop_id, shop in stored_shops.items():
            self.partition_of[shop_id] = self.home(shop_id)
            self.shop_owner[shop_id] = Owned(shop.epoch, 0)
            self.floors.update({(shop_id, t): o for t, o in shop.offsets.items()})
            if shop.outbox:
                resend.extend(shop.outbox)
                self.unacked_shops.add(shop_id)
            if shop.snapshot is None:
                continue
            problem = self._load(shop_id, shop.snapshot)
            if problem is None:
                restored += 1
                continue
            problems[shop_id] = problem
            self.quarantine(shop_id, problem)
            self.quarantined[shop_id].holds.update(shop.offsets)
        return Restored(resend, restored, marks, problems)

    def _load(self, shop_id: str, snapshot: dict[str, object]) -> str | None:
        """Load a stored shop into the engine; what is wrong with it, if anything."""
        try:
            self.engine.restore_shop(shop_id, snapshot)
        except (SnapshotError, KeyError, TypeError, ValueError, IndexError) as exc:
            return f"stored state does not load: {type(exc).__name__}: {exc}"
        found = consistency_problems(self.engine.shop(shop_id))
        if found:
            more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
            return "stored state is inconsistent: " + "; ".join(found[:3]) + more
        return None

    def release(self, partitions: Iterable[int]) -> None:
        """Forget the shops of `partitions` (another instance owns them now)."""
        gone = set(partitions)
        for shop_id, part in list(self.partition_of.items()):
            if part in gone:
                if shop_id in self.engine.shops:
                    self.engine.reset_shop(shop_id)
                del self.partition_of[shop_id]
                self.shop_owner.pop(shop_id, None)
                self.quarantined.pop(shop_id, None)
                self.unacked_shops.discard(shop_id)
        for part in gone:
            self.partition_owner.pop(part, None)
            self.unacked_partitions.discard(part)
        self.floors = {k: v for k, v in self.floors.items() if k[0] in self.partition_of}
