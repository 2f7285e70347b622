"""Bookkeeping between the engine and the store: what one batch checkpoints, what a restore
brings back (CONTRACT 6 and 7).

The service owns the I/O order — apply a batch, `Checkpoint.save`, then produce — and this
module owns the facts: which input partition each shop lives on, the offsets each shop's
stored state already reflects (records below them are skipped after a restore), and which
outboxes hold records Kafka has not acknowledged yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from daemon.core.engine import Engine
from daemon.store import OutboxRecord, ShopCheckpoint, Store


@dataclass(slots=True)
class Batch:
    """One batch in the making: its outputs in decision order and what it consumed."""

    sends: list[OutboxRecord] = field(default_factory=list)
    shops: dict[str, ShopCheckpoint] = field(default_factory=dict)
    orphans: dict[int, list[OutboxRecord]] = field(default_factory=dict)
    watermarks: dict[tuple[str, int], int] = field(default_factory=dict)


class Checkpoint:
    """Checkpoints of the shops of the partitions this instance owns."""

    def __init__(self, engine: Engine, store: Store) -> None:
        self.engine = engine
        self.store = store
        self.partition_of: dict[str, int] = {}
        self.floors: dict[tuple[str, str], int] = {}  # (shop, topic) -> first new offset
        self.unacked_shops: set[str] = set()
        self.unacked_partitions: set[int] = set()
        self.abandoned = False  # deliveries given up on: outboxes keep them until a restore

    # --------------------------------------------------------------------------- batches

    def seen_before(self, shop_id: str | None, topic: str, offset: int) -> bool:
        """Whether a record is already reflected in its shop's restored state."""
        floor = self.floors.get((shop_id or "", topic))
        return floor is not None and offset < floor

    def consumed(
        self, batch: Batch, shop_id: str | None, topic: str, part: int, offset: int
    ) -> None:
        """Note a consumed record (applied, rejected or skipped)."""
        batch.watermarks[(topic, part)] = offset + 1
        if shop_id is not None and shop_id in self.engine.shops:
            self.partition_of[shop_id] = part
            cp = self._shop(batch, shop_id)
            cp.offsets[topic] = offset + 1

    def output(
        self, batch: Batch, shop_id: str | None, part: int | None, record: OutboxRecord
    ) -> None:
        """Add an output to the batch, in the outbox of its shop (or of its partition)."""
        batch.sends.append(record)
        if shop_id is not None and shop_id in self.partition_of:
            self._shop(batch, shop_id).outbox.append(record)
        elif part is not None:
            batch.orphans.setdefault(part, []).append(record)
        else:  # timers fire only in shops that consumed a record or were restored
            raise RuntimeError(f"output of shop {shop_id!r} whose partition is unknown")

    def _shop(self, batch: Batch, shop_id: str) -> ShopCheckpoint:
        cp = batch.shops.get(shop_id)
        if cp is None:
            cp = batch.shops[shop_id] = ShopCheckpoint(self.partition_of.get(shop_id))
        return cp

    async def save(self, batch: Batch) -> None:
        """Write the engine's changes with the batch's offsets and outboxes (StoreError)."""
        for shop_id, delta in self.engine.take_deltas().items():
            self._shop(batch, shop_id).delta = delta
        await self.store.save(batch.shops, batch.orphans, batch.watermarks)
        self.unacked_shops.update(s for s, cp in batch.shops.items() if cp.outbox)
        self.unacked_partitions.update(p for p, records in batch.orphans.items() if records)

    async def acknowledged(self) -> None:
        """Kafka acknowledged every record sent so far: empty their outboxes."""
        if self.abandoned:
            return
        if self.unacked_shops or self.unacked_partitions:
            await self.store.clear_outboxes(self.unacked_shops, self.unacked_partitions)
        self.unacked_shops.clear()
        self.unacked_partitions.clear()

    # -------------------------------------------------------------------------- restore

    async def restore(self, partitions: Iterable[int]) -> tuple[list[OutboxRecord], int]:
        """Load the shops of `partitions` into a reset engine (StoreError).

        Returns the outbox records to send again (acknowledge them with `acknowledged`)
        and how many shops had state.
        """
        owned = set(partitions)
        engine = self.engine
        for shop_id in list(engine.shops):
            engine.reset_shop(shop_id)
        self.partition_of.clear()
        self.floors.clear()
        self.unacked_shops.clear()
        self.unacked_partitions.clear()
        self.abandoned = False
        located = await self.store.partitions_of(sorted(engine.shops))
        mine = sorted(s for s, p in located.items() if p in owned)
        stored = await self.store.load(mine)
        resend: list[OutboxRecord] = []
        restored = 0
        for shop_id, shop in stored.items():
            if shop.snapshot is not None:
                engine.restore_shop(shop_id, shop.snapshot)
                restored += 1
            assert shop.partition is not None
            self.partition_of[shop_id] = shop.partition
            self.floors.update({(shop_id, t): o for t, o in shop.offsets.items()})
            if shop.outbox:
                resend.extend(shop.outbox)
                self.unacked_shops.add(shop_id)
        for partition, records in (await self.store.orphans(sorted(owned))).items():
            if records:
                resend.extend(records)
                self.unacked_partitions.add(partition)
        return resend, restored

    def release(self, partitions: Iterable[int]) -> None:
        """Forget the shops of `partitions` (another instance owns them now)."""
        gone = set(partitions)
        for shop_id, part in list(self.partition_of.items()):
            if part in gone and shop_id in self.engine.shops:
                self.engine.reset_shop(shop_id)
                del self.partition_of[shop_id]
        self.floors = {k: v for k, v in self.floors.items() if k[0] in self.partition_of}
