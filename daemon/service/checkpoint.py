"""Bookkeeping between the engine and the store: what one batch checkpoints, what a restore
brings back, which shops this instance owns and which it has set aside (contract §6 and 7).

The service owns the I/O order — apply a batch, `Checkpoint.save`, then produce what `save`
returns — and this module owns the facts: each shop's home partition (contract §1,
daemon.service.kafka.home_partition), the owner epochs and checkpoint numbers that fence this
instance once another has claimed a shop or partition (daemon.service.store), the offsets
each shop's stored state reflects and each partition's consumed position (records below them
are skipped when read again), which outboxes hold records Kafka has not acknowledged yet, and
the shops and partitions set aside. It keeps them in `held` (daemon.service.holdings: one
record per partition held, replaced whole by each move), which the service and its other
parts read and only this module changes; the values it exchanges with the service are in
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

from collections.abc import Iterable, Mapping
from dataclasses import replace

from daemon.core.consistency import consistency_problems
from daemon.core.engine import Engine
from daemon.core.snapshot import SnapshotError
from daemon.service.checkpoint_types import Batch, Owner, Position, Restored, Saved
from daemon.service.holdings import (
    Holdings,
    OwnedPartition,
    OwnedShop,
    SetAside,
    WaitingPartition,
)
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
    """Checkpoints of the shops of the partitions this instance owns (`held`)."""

    def __init__(self, engine: Engine, store: Store) -> None:
        self.engine = engine
        self.store = store
        self.held = Holdings()
        self._abandoned = False  # deliveries given up on: outboxes keep them until a restore

    # --------------------------------------------------------------------------- batches

    def seen_before(self, shop_id: str | None, topic: str, part: int, offset: int) -> bool:
        """Whether a record read again is already reflected: in its owned shop's stored
        state, or (a record of no owned shop) consumed before."""
        shop = self.held.shop(shop_id) if shop_id is not None else None
        if shop is not None:
            floor = shop.floors.get(topic)
        else:
            owned = self.held.owned(part)
            floor = owned.done.get(topic) if owned is not None else None
        return floor is not None and offset < floor

    def consumed(
        self, batch: Batch, shop_id: str | None, topic: str, part: int, offset: int
    ) -> None:
        """Note a consumed record (applied, rejected, skipped or set aside)."""
        self._partition(batch, part).done[topic] = offset + 1
        held = self.held.holding(shop_id) if shop_id is not None else None
        if held is None or shop_id is None:
            return
        aside = held.set_aside.get(shop_id)
        if aside is not None:
            if topic not in aside.holds:
                floor = held.shops[shop_id].floors.get(topic, offset)
                holds = {**aside.holds, topic: min(floor, offset)}
                aside = replace(aside, holds=holds)
                self.held.change(self.held.home(shop_id), set_aside={shop_id: aside})
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
        if shop_id is not None and self.held.owns(shop_id):
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
        unsaved = None
        if batch is not None:
            unsaved = batch.shops.pop(shop_id, None)
            batch.sends = [(o, r) for o, r in batch.sends if o != shop_id]
        self._put_aside(shop_id, cause, retry, unsaved)

    def _put_aside(
        self,
        shop_id: str,
        cause: str,
        retry: bool,
        unsaved: ShopCheckpoint | None = None,
        holds: Mapping[str, int] | None = None,
    ) -> None:
        """Set an owned shop aside (a shop set aside already keeps its cause), holding its
        partition's watermarks at the first record of `unsaved`, and at `holds`."""
        self.engine.reset_shop(shop_id)
        held = self.held.holding(shop_id)
        if held is None:
            return
        aside = held.set_aside.get(shop_id) or SetAside(cause, retry)
        if unsaved is not None:
            floors, more = held.shops[shop_id].floors, dict(aside.holds)
            for topic, first in unsaved.first.items():
                more.setdefault(topic, min(floors.get(topic, first), first))
            aside = replace(aside, holds=more)
        if holds:
            aside = replace(aside, holds={**aside.holds, **holds})
        self.held.change(self.held.home(shop_id), set_aside={shop_id: aside})

    async def save(self, batch: Batch) -> Saved:
        """Write the engine's changes with the batch's offsets and outboxes. A shop or
        partition another instance has claimed comes back lost; one whose Redis node did
        not answer is set aside to wait. StoreError when Redis as a whole did not answer."""
        held = self.held
        for shop_id, delta in self.engine.take_deltas().items():
            if held.owns(shop_id) and held.aside(shop_id) is None:
                self._shop(batch, shop_id).delta = delta
        lost = await self._save_shops(batch.shops)
        parts = {p: cp for p, cp in batch.partitions.items() if p not in lost}
        more_lost, waiting = await self._save_partitions(parts)
        lost |= more_lost
        self.release(lost | waiting)
        for part in waiting:
            held.put(part, WaitingPartition("its bookkeeping in Redis did not answer"))
        sends = [  # a released partition's shops are no longer owned
            record
            for owner, record in batch.sends
            if (
                held.owns(owner) and held.aside(owner) is None
                if isinstance(owner, str)
                else owner not in lost | waiting
            )
        ]
        return Saved(sends, lost, waiting)

    def _shop_owner(self, shop_id: str) -> Owned:
        shop = self.held.shop(shop_id)
        if shop is None or shop.owner is None:
            raise KeyError(f"shop {shop_id!r} has no claim to write under")
        return shop.owner

    async def _save_shops(self, shops: dict[str, ShopCheckpoint]) -> set[int]:
        """Write the shops' checkpoints; the partitions of those found fenced. A shop whose
        write failed is set aside to wait (its outputs are not sent)."""
        writes = {s: (_bump(self._shop_owner(s)), cp) for s, cp in shops.items()}
        lost: set[int] = set()
        saved: dict[int, dict[str, OwnedShop]] = {}
        unacked: dict[int, list[str]] = {}
        for shop_id, outcome in (await self.store.save_shops(writes)).items():
            cp = shops[shop_id]
            if isinstance(outcome, StoreError):
                self._put_aside(shop_id, str(outcome), True, cp)
                continue
            part = self.held.home(shop_id)
            if outcome is Outcome.FENCED:
                lost.add(part)
                continue
            before = self.held.shop(shop_id)
            floors = {**(before.floors if before else {}), **cp.offsets}
            saved.setdefault(part, {})[shop_id] = OwnedShop(writes[shop_id][0], floors)
            if cp.outbox:
                unacked.setdefault(part, []).append(shop_id)
        for part, owned in saved.items():
            self.held.change(part, shops=owned, unacked=unacked.get(part, ()))
        return lost

    async def _save_partitions(
        self, partitions: dict[int, PartitionCheckpoint]
    ) -> tuple[set[int], set[int]]:
        """Write the partitions' watermarks (held for shops set aside), consumed positions
        and shop-less outboxes; the partitions found fenced, and those that failed."""
        writes = {}
        for part, cp in partitions.items():
            held = self.held.owned(part)
            if held is not None:  # records read again never move `done` back
                cp.done = {t: max(o, held.done.get(t, 0)) for t, o in cp.done.items()}
                cp.marks = {t: min(o, _lowest_hold(held, t)) for t, o in cp.done.items()}
                writes[part] = (_bump(held.owner), cp)
        lost: set[int] = set()
        failed: set[int] = set()
        for part, outcome in (await self.store.save_partitions(writes)).items():
            held = self.held.owned(part)
            if isinstance(outcome, StoreError):
                failed.add(part)
            elif outcome is Outcome.FENCED:
                lost.add(part)
            elif held is not None:
                cp = partitions[part]
                self.held.put(part, replace(
                    held, owner=writes[part][0], done={**held.done, **cp.done},
                    unacked=held.unacked or bool(cp.outbox),
                ))  # fmt: skip
        return lost, failed

    async def acknowledged(self) -> None:
        """Kafka acknowledged every record sent so far: empty their outboxes. An outbox
        whose node did not answer is emptied next time (or sent again by a restore)."""
        if self._abandoned:
            return
        claimed = self.held.claimed()
        shops = {
            s: owner.epoch
            for held in claimed.values()
            for s in held.unacked_shops
            if (owner := held.shops[s].owner) is not None
        }
        parts = {p: held.owner.epoch for p, held in claimed.items() if held.unacked}
        outcomes = await self.store.clear_outboxes(shops, parts)
        failed = {o for o, outcome in outcomes.items() if isinstance(outcome, StoreError)}
        for part, held in self.held.claimed().items():
            if held.unacked or held.unacked_shops:
                self.held.put(part, replace(
                    held, unacked=held.unacked and part in failed,
                    unacked_shops=held.unacked_shops.intersection(failed),
                ))  # fmt: skip

    def abandon(self) -> None:
        """Deliveries were given up on (daemon.service.delivery): their records stay in the
        outboxes, which `acknowledged` leaves alone until a restore sends them again."""
        self._abandoned = True

    # -------------------------------------------------------------------------- restore

    async def restore(self, partitions: Iterable[int], partition_count: int) -> Restored:
        """Forget everything, then claim `partitions` (StoreError when Redis as a whole did
        not answer)."""
        for shop_id in list(self.engine.shops):
            self.engine.reset_shop(shop_id)
        self.held.clear(partition_count)
        self._abandoned = False
        return await self.claim(partitions)

    async def claim(self, partitions: Iterable[int]) -> Restored:
        """Claim `partitions` and then the shops whose home they are, and load the shops.

        Partitions are claimed before their shops (daemon.service.store says why). A partition whose
        claim fails waits (`waiting_partitions`); a shop whose claim fails waits too; a shop
        whose stored state does not load or fails its consistency check is quarantined.
        StoreError when Redis as a whole did not answer: nothing is changed here then.
        """
        held = self.held
        wanted = sorted(set(partitions))
        claims = await self.store.claim_partitions(wanted)
        owned = {p for p in wanted if not isinstance(claims[p], StoreError)}
        shops = await self.store.claim_shops(s for s in self.engine.shops if held.home(s) in owned)
        resend: list[OutboxRecord] = []
        seeks: dict[Position, int] = {}
        waiting: dict[int, str] = {}
        for part in wanted:
            stored = claims[part]
            if isinstance(stored, StoreError):
                waiting[part] = str(stored)
                held.put(part, WaitingPartition(str(stored)))
                continue
            seeks.update({(topic, part): mark for topic, mark in stored.marks.items()})
            resend.extend(stored.outbox)
            owner = Owned(stored.epoch, 0)
            held.put(part, OwnedPartition(owner, dict(stored.done), bool(stored.outbox)))
        restored, problems = 0, {}
        for shop_id, shop in shops.items():
            if isinstance(shop, StoreError):
                problems[shop_id] = str(shop)
                held.change(held.home(shop_id), shops={shop_id: OwnedShop(None)})
                self._put_aside(shop_id, str(shop), True)
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
        part = self.held.home(shop_id)
        before = self.held.shop(shop_id)
        floors = dict(before.floors) if before is not None else {}
        if shop.partition in (None, part):
            # offsets counted on another partition (the partition count changed and the shop
            # moved) say nothing of its new home's records: those are all new to it
            floors.update(shop.offsets)
        owned = OwnedShop(Owned(shop.epoch, 0), floors)
        self.held.change(part, shops={shop_id: owned}, unacked=[shop_id] if shop.outbox else [])
        resend.extend(shop.outbox)
        if shop.snapshot is None:
            return None
        problem = self._load(shop_id, shop.snapshot)
        if problem is not None:
            self._put_aside(shop_id, problem, False, holds=shop.offsets)
        return problem

    def _load(self, shop_id: str, snapshot: dict[str, object]) -> str | None:
        """Load a stored shop into the engine; what is wrong with it, if anything."""
        try:
            self.engine.restore_shop(shop_id, snapshot)
        except SnapshotError as exc:  # says what is wrong, such as a newer version's format
            return f"stored state does not load: {exc}"
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            return f"stored state does not load: {type(exc).__name__}: {exc}"
        found = consistency_problems(self.engine.shop(shop_id))
        if found:
            more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
            return "stored state is inconsistent: " + "; ".join(found[:3]) + more
        return None

    async def readmit(self, shop_ids: Iterable[str]) -> Restored:
        """Claim and load shops set aside again; where to read their partitions again from
        (their holds). A shop that fails again stays (or is again) set aside. StoreError
        when Redis as a whole did not answer: nothing is changed here then."""
        wanted = [s for s in shop_ids if self.held.aside(s) is not None]
        claimed = await self.store.claim_shops(wanted)
        seeks: dict[Position, int] = {}
        resend: list[OutboxRecord] = []
        restored, problems = 0, {}
        for shop_id, shop in claimed.items():
            if isinstance(shop, StoreError):
                problems[shop_id] = str(shop)
                continue
            aside = self.held.released(shop_id)
            problem = self._take(shop_id, shop, resend)
            if problem is not None:
                problems[shop_id] = problem
                again = self.held.aside(shop_id)
                holds = {**aside.holds, **(again.holds if again else {})}
                self._put_aside(shop_id, problem, False, holds=holds)
                continue
            restored += shop.snapshot is not None
            part = self.held.home(shop_id)
            for topic, hold in aside.holds.items():
                seeks[(topic, part)] = min(hold, seeks.get((topic, part), hold))
        return Restored(resend, restored, seeks, problems, set(), {})

    def release(self, partitions: Iterable[int]) -> None:
        """Forget `partitions` and their shops (another instance owns them now, or they
        wait)."""
        for part in set(partitions):
            held = self.held.drop(part)
            if isinstance(held, OwnedPartition):
                for shop_id in held.shops:
                    if shop_id in self.engine.shops:
                        self.engine.reset_shop(shop_id)


def _lowest_hold(held: OwnedPartition, topic: str) -> int:
    """The lowest watermark hold on `topic` of a shop of the partition set aside (or a value
    above any offset when there is none)."""
    holds = [a.holds[topic] for a in held.set_aside.values() if topic in a.holds]
    return min(holds, default=_NO_HOLD)
