"""Bookkeeping between the engine and the store: what one batch checkpoints, what a restore
brings back, which shops this instance owns and which it has set aside (CONTRACT 6 and 7).

The service owns the I/O order — apply a batch, `Checkpoint.save`, then produce what `save`
returns — and this module owns the facts: each shop's home partition (CONTRACT 1,
daemon.service.kafka.home_partition), the owner epochs and checkpoint numbers that fence this
instance once another has claimed a shop or partition (daemon.service.store), the offsets
each shop's stored state reflects and each partition's consumed position (records below them
are skipped when read again), which outboxes hold records Kafka has not acknowledged yet, and
the shops and partitions set aside. The values it exchanges with the service are in
daemon.service.checkpoint_types.

**Set aside.** A shop is set aside when its engine failed unexpectedly or its stored state
failed its consistency check (*quarantined*: released by a restart or a reload), or when
the Redis node holding it did not answer (*waiting*: retried by itself). Its in-memory state
is dropped, the outputs of its unsaved batch are not sent, its later records are skipped,
and the watermark of its partition is held at its first record not reflected in its stored
state. `readmit` claims and loads it again and says where to read its partition again from:
nothing is lost. A partition whose own bookkeeping did not answer waits as a whole.
"""

from __future__ import annotations

from collections.abc import Iterable

from daemon.core.consistency import consistency_problems
from daemon.core.engine import Engine
from daemon.core.snapshot import SnapshotError
from daemon.service.checkpoint_types import Batch, Owner, Position, Restored, Saved, SetAside
from daemon.service.kafka import home_partition
from daemon.service.store import (
    OutboxRecord,
    Outcome,
    Owned,
    PartitionCheckpoint,
    ShopCheckpoint,
    Store,
    StoredShop,
    StoreError,
)

_NO_HOLD = 2**63


def _bump(owned: Owned) -> Owned:
    """The owner's token for its next checkpoint."""
    return Owned(owned.epoch, owned.seq + 1)


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
        self.part_floors: dict[tuple[int, str], int] = {}  # shop-less records: the same
        self.set_aside: dict[str, SetAside] = {}
        self.waiting_partitions: dict[int, str] = {}  # assigned, not claimed: why
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

    @property
    def quarantined(self) -> dict[str, SetAside]:
        """Shops set aside until a restart or reload (engine failure, bad stored state)."""
        return {s: a for s, a in self.set_aside.items() if not a.retry}

    @property
    def waiting(self) -> dict[str, SetAside]:
        """Shops set aside until their Redis node answers again (retried by themselves)."""
        return {s: a for s, a in self.set_aside.items() if a.retry}

    # --------------------------------------------------------------------------- batches

    def seen_before(self, shop_id: str | None, topic: str, part: int, offset: int) -> bool:
        """Whether a record read again is already reflected: in its owned shop's stored
        state, or (a record of no owned shop) consumed before."""
        if shop_id is not None and shop_id in self.partition_of:
            floor = self.floors.get((shop_id, topic))
        else:
            floor = self.part_floors.get((part, topic))
        return floor is not None and offset < floor

    def consumed(
        self, batch: Batch, shop_id: str | None, topic: str, part: int, offset: int
    ) -> None:
        """Note a consumed record (applied, rejected, skipped or set aside)."""
        self._partition(batch, part).done[topic] = offset + 1
        if shop_id is None or shop_id not in self.partition_of:
            return
        aside = self.set_aside.get(shop_id)
        if aside is not None:
            if topic not in aside.holds:
                aside.holds[topic] = min(self.floors.get((shop_id, topic), offset), offset)
            return
        cp = self._shop(batch, shop_id)
        cp.first.setdefault(topic, offset)
        cp.offsets[topic] = offset + 1
        cp.partition = part

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
            cp = batch.shops[shop_id] = ShopCheckpoint()
        return cp

    @staticmethod
    def _partition(batch: Batch, part: int) -> PartitionCheckpoint:
        cp = batch.partitions.get(part)
        if cp is None:
            cp = batch.partitions[part] = PartitionCheckpoint()
        return cp

    def put_aside(
        self, shop_id: str, cause: str, batch: Batch | None = None, *, retry: bool = False
    ) -> None:
        """Set a shop aside (see the module docstring): drop its state and the unsaved part
        of `batch`, and hold its partition's watermarks at its first unsaved record."""
        self.engine.reset_shop(shop_id)
        aside = self.set_aside.setdefault(shop_id, SetAside(cause, retry))
        if batch is None:
            return
        cp = batch.shops.pop(shop_id, None)
        if cp is not None:
            self._hold(shop_id, aside, cp)
        batch.sends = [(o, r) for o, r in batch.sends if o != shop_id]

    def _hold(self, shop_id: str, aside: SetAside, cp: ShopCheckpoint) -> None:
        for topic, first in cp.first.items():
            floor = self.floors.get((shop_id, topic), first)
            aside.holds.setdefault(topic, min(floor, first))

    async def save(self, batch: Batch) -> Saved:
        """Write the engine's changes with the batch's offsets and outboxes. A shop or
        partition another instance has claimed comes back lost; one whose Redis node did
        not answer is set aside to wait. StoreError when Redis as a whole did not answer."""
        for shop_id, delta in self.engine.take_deltas().items():
            if shop_id in self.partition_of and shop_id not in self.set_aside:
                self._shop(batch, shop_id).delta = delta
        lost = await self._save_shops(batch.shops)
        parts = {p: cp for p, cp in batch.partitions.items() if p not in lost}
        more_lost, waiting = await self._save_partitions(parts)
        lost |= more_lost
        self.release(lost | waiting)
        for part in waiting:
            self.waiting_partitions[part] = "its bookkeeping in Redis did not answer"
        sends = [  # a released partition's shops are no longer in partition_of
            record
            for owner, record in batch.sends
            if (
                owner in self.partition_of and owner not in self.set_aside
                if isinstance(owner, str)
                else owner not in lost | waiting
            )
        ]
        return Saved(sends, lost, waiting)

    async def _save_shops(self, shops: dict[str, ShopCheckpoint]) -> set[int]:
        """Write the shops' checkpoints; the partitions of those found fenced. A shop whose
        write failed is set aside to wait (its outputs are not sent)."""
        writes = {s: (_bump(self.shop_owner[s]), cp) for s, cp in shops.items()}
        lost: set[int] = set()
        for shop_id, outcome in (await self.store.save_shops(writes)).items():
            cp = shops[shop_id]
            if isinstance(outcome, StoreError):
                self.put_aside(shop_id, str(outcome), retry=True)
                self._hold(shop_id, self.set_aside[shop_id], cp)
                continue
            if outcome is Outcome.FENCED:
                lost.add(self.partition_of[shop_id])
                continue
            self.shop_owner[shop_id] = writes[shop_id][0]
            self.floors.update({(shop_id, t): o for t, o in cp.offsets.items()})
            if cp.outbox:
                self.unacked_shops.add(shop_id)
        return lost

    async def _save_partitions(
        self, partitions: dict[int, PartitionCheckpoint]
    ) -> tuple[set[int], set[int]]:
        """Write the partitions' watermarks (held for shops set aside), consumed positions
        and shop-less outboxes; the partitions found fenced, and those that failed."""
        writes = {}
        for part, cp in partitions.items():
            if part in self.partition_owner:  # records read again never move `done` back
                cp.done = {
                    t: max(o, self.part_floors.get((part, t), 0)) for t, o in cp.done.items()
                }
                cp.marks = {t: min(o, self._held(part, t)) for t, o in cp.done.items()}
                writes[part] = (_bump(self.partition_owner[part]), cp)
        lost: set[int] = set()
        failed: set[int] = set()
        for part, outcome in (await self.store.save_partitions(writes)).items():
            if isinstance(outcome, StoreError):
                failed.add(part)
            elif outcome is Outcome.FENCED:
                lost.add(part)
            else:
                self.partition_owner[part] = writes[part][0]
                cp = partitions[part]
                self.part_floors.update({(part, t): o for t, o in cp.done.items()})
                if cp.outbox:
                    self.unacked_partitions.add(part)
        return lost, failed

    def _held(self, part: int, topic: str) -> int:
        """The lowest watermark hold of a shop of `part` set aside, on `topic` (or a value
        above any offset when there is none)."""
        holds = [
            a.holds[topic]
            for shop_id, a in self.set_aside.items()
            if topic in a.holds and self.partition_of.get(shop_id) == part
        ]
        return min(holds, default=_NO_HOLD)

    async def acknowledged(self) -> None:
        """Kafka acknowledged every record sent so far: empty their outboxes. An outbox
        whose node did not answer is emptied next time (or sent again by a restore)."""
        if self.abandoned:
            return
        shops = {s: self.shop_owner[s].epoch for s in self.unacked_shops if s in self.shop_owner}
        parts = {
            p: self.partition_owner[p].epoch
            for p in self.unacked_partitions
            if p in self.partition_owner
        }
        outcomes = await self.store.clear_outboxes(shops, parts)
        failed = {o for o, outcome in outcomes.items() if isinstance(outcome, StoreError)}
        self.unacked_shops = {s for s in self.unacked_shops if s in failed}
        self.unacked_partitions = {p for p in self.unacked_partitions if p in failed}

    # -------------------------------------------------------------------------- restore

    async def restore(self, partitions: Iterable[int], partition_count: int) -> Restored:
        """Forget everything, then claim `partitions` (StoreError when Redis as a whole did
        not answer)."""
        for shop_id in list(self.engine.shops):
            self.engine.reset_shop(shop_id)
        if partition_count != self.partitions:
            self.partitions, self._homes = partition_count, {}
        for bookkeeping in (self.partition_of, self.shop_owner, self.partition_owner):
            bookkeeping.clear()
        self.floors.clear()
        self.part_floors.clear()
        self.set_aside.clear()
        self.waiting_partitions.clear()
        self.unacked_shops.clear()
        self.unacked_partitions.clear()
        self.abandoned = False
        return await self.claim(partitions)

    async def claim(self, partitions: Iterable[int]) -> Restored:
        """Claim `partitions` and then the shops whose home they are, and load the shops.

        Partitions are claimed before their shops (daemon.service.store says why). A partition whose
        claim fails waits (`waiting_partitions`); a shop whose claim fails waits too; a shop
        whose stored state does not load or fails its consistency check is quarantined.
        """
        wanted = sorted(set(partitions))
        resend: list[OutboxRecord] = []
        seeks: dict[Position, int] = {}
        waiting: dict[int, str] = {}
        for part, stored in (await self.store.claim_partitions(wanted)).items():
            if isinstance(stored, StoreError):
                waiting[part] = self.waiting_partitions[part] = str(stored)
                continue
            self.waiting_partitions.pop(part, None)
            self.partition_owner[part] = Owned(stored.epoch, 0)
            seeks.update({(topic, part): mark for topic, mark in stored.marks.items()})
            self.part_floors.update({(part, t): o for t, o in stored.done.items()})
            if stored.outbox:
                resend.extend(stored.outbox)
                self.unacked_partitions.add(part)
        owned = set(wanted) - set(waiting)
        mine = [s for s in self.engine.shops if self.home(s) in owned]
        restored, problems = 0, {}
        for shop_id, shop in (await self.store.claim_shops(mine)).items():
            self.partition_of[shop_id] = self.home(shop_id)
            if isinstance(shop, StoreError):
                problems[shop_id] = str(shop)
                self.put_aside(shop_id, str(shop), retry=True)
                continue
            problem = self._take(shop_id, shop, resend)
            if problem is not None:
                problems[shop_id] = problem
            elif shop.snapshot is not None:
                restored += 1
        return Restored(resend, restored, seeks, problems, owned, waiting)

    def _take(self, shop_id: str, shop: StoredShop, resend: list[OutboxRecord]) -> str | None:
        """Own a claimed shop: its epoch, offsets, outbox and state; what is wrong with the
        state, if anything (the shop is then quarantined)."""
        self.shop_owner[shop_id] = Owned(shop.epoch, 0)
        if shop.partition in (None, self.partition_of[shop_id]):
            # offsets counted on another partition (the partition count changed and the shop
            # moved) say nothing of its new home's records: those are all new to it
            self.floors.update({(shop_id, t): o for t, o in shop.offsets.items()})
        if shop.outbox:
            resend.extend(shop.outbox)
            self.unacked_shops.add(shop_id)
        if shop.snapshot is None:
            return None
        problem = self._load(shop_id, shop.snapshot)
        if problem is not None:
            self.put_aside(shop_id, problem)
            self.set_aside[shop_id].holds.update(shop.offsets)
        return problem

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

    async def readmit(self, shop_ids: Iterable[str]) -> Restored:
        """Claim and load shops set aside again; where to read their partitions again from
        (their holds). A shop that fails again stays (or is again) set aside."""
        wanted = [s for s in shop_ids if s in self.set_aside and s in self.partition_of]
        seeks: dict[Position, int] = {}
        resend: list[OutboxRecord] = []
        restored, problems = 0, {}
        for shop_id, shop in (await self.store.claim_shops(wanted)).items():
            if isinstance(shop, StoreError):
                problems[shop_id] = str(shop)
                continue
            aside = self.set_aside.pop(shop_id)
            problem = self._take(shop_id, shop, resend)
            if problem is not None:
                problems[shop_id] = problem
                self.set_aside[shop_id].holds = aside.holds | self.set_aside[shop_id].holds
                continue
            restored += shop.snapshot is not None
            part = self.partition_of[shop_id]
            for topic, hold in aside.holds.items():
                seeks[(topic, part)] = min(hold, seeks.get((topic, part), hold))
        return Restored(resend, restored, seeks, problems, set(), {})

    def release(self, partitions: Iterable[int]) -> None:
        """Forget the shops of `partitions` (another instance owns them now, or they wait)."""
        gone = set(partitions)
        if not gone:
            return
        for shop_id, part in list(self.partition_of.items()):
            if part in gone:
                if shop_id in self.engine.shops:
                    self.engine.reset_shop(shop_id)
                del self.partition_of[shop_id]
                self.shop_owner.pop(shop_id, None)
                self.set_aside.pop(shop_id, None)
                self.unacked_shops.discard(shop_id)
        for part in gone:
            self.partition_owner.pop(part, None)
            self.unacked_partitions.discard(part)
            self.waiting_partitions.pop(part, None)
        self.floors = {k: v for k, v in self.floors.items() if k[0] in self.partition_of}
        self.part_floors = {k: v for k, v in self.part_floors.items() if k[0] not in gone}
