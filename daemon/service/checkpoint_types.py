"""The values `daemon.service.checkpoint.Checkpoint` passes to and from the service: the batch
in the making (`Batch`), what saving it wrote (`Saved`) and what a claim of partitions or a
readmission of shops brought back (`Restored`). What it owns is in daemon.service.holdings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.service.store import OutboxRecord, PartitionCheckpoint, ShopCheckpoint

Owner = str | int  # a shop id, or the partition number of shop-less outputs
Position = tuple[str, int]  # (topic, partition)


@dataclass(slots=True)
class Batch:
    """One batch in the making: its outputs in decision order and what it consumed."""

    sends: list[tuple[Owner, OutboxRecord]] = field(default_factory=list)
    shops: dict[str, ShopCheckpoint] = field(default_factory=dict)
    partitions: dict[int, PartitionCheckpoint] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Saved:
    """What a checkpoint wrote: the records to produce; the partitions found taken by
    another instance (`lost`) or whose bookkeeping did not answer (`waiting`) — their
    shops are dropped here and the service stops consuming them."""

    sends: list[OutboxRecord]
    lost: set[int]
    waiting: set[int]


@dataclass(frozen=True, slots=True)
class Restored:
    """What a claim of partitions (or a readmission of shops) brought back."""

    resend: list[OutboxRecord]  # outbox records to produce again, then `acknowledged`
    shops: int  # shops that had state
    seeks: dict[Position, int]  # where to read from: watermarks, or a held position
    set_aside: dict[str, str]  # shop -> why it is not served
    owned: set[int]  # the partitions claimed
    waiting: dict[int, str]  # partitions whose claim failed -> why
