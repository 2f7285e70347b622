"""The values `daemon.service.checkpoint.Checkpoint` passes to and from the service: the batch
in the making (`Batch`), what saving it wrote (`Saved`), what a claim of partitions or a
readmission of shops brought back (`Restored`) and why a shop is set aside (`SetAside`);
and the records in which it keeps what it owns, one per partition held (`OwnedPartition`,
with its `OwnedShop`s; or `WaitingPartition`), each replaced whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from daemon.service.store import OutboxRecord, Owned, PartitionCheckpoint, ShopCheckpoint

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
class SetAside:
    """Why a shop is set aside, whether it is retried by itself (Redis did not answer), and
    where its partition's watermark is held per topic."""

    cause: str
    retry: bool = False
    holds: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OwnedShop:
    """A shop this instance owns: its owner token in Redis (None while its claim did not
    answer: it is then set aside, waiting) and, per topic, the first offset its stored state
    does not reflect (`floors`: records below it are skipped when read again)."""

    owner: Owned | None
    floors: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OwnedPartition:
    """A partition this instance has claimed, with everything it owns through it; a move
    replaces the record whole, and letting the partition go drops it.

    `owner` is the partition's owner token, `done` its consumed position per topic (records
    of no owned shop below it are skipped when read again), `unacked` whether its own
    (shop-less) outbox holds records Kafka has not acknowledged yet. `shops` are the shops
    whose home it is, `set_aside` those of them set aside, `unacked_shops` those whose outbox
    holds unacknowledged records."""

    owner: Owned
    done: Mapping[str, int] = field(default_factory=dict)
    unacked: bool = False
    shops: Mapping[str, OwnedShop] = field(default_factory=dict)
    set_aside: Mapping[str, SetAside] = field(default_factory=dict)
    unacked_shops: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class WaitingPartition:
    """A partition assigned to this instance whose claim did not answer (`cause`): nothing
    of it is consumed until a readmission claims it."""

    cause: str


Held = OwnedPartition | WaitingPartition


@dataclass(frozen=True, slots=True)
class Restored:
    """What a claim of partitions (or a readmission of shops) brought back."""

    resend: list[OutboxRecord]  # outbox records to produce again, then `acknowledged`
    shops: int  # shops that had state
    seeks: dict[Position, int]  # where to read from: watermarks, or a held position
    set_aside: dict[str, str]  # shop -> why it is not served
    owned: set[int]  # the partitions claimed
    waiting: dict[int, str]  # partitions whose claim failed -> why
