"""What this instance holds: one record per input partition, each replaced whole by a move.

An `OwnedPartition` is a partition claimed in Redis together with everything owned through
it: its owner token, its consumed positions, whether its own (shop-less) outbox waits for
acknowledgements, and the shops whose home it is (`OwnedShop`), those of them set aside
(`SetAside`) and those whose outbox waits. A `WaitingPartition` is assigned, but its claim
did not answer. Letting a partition go drops its record (`drop`); a restore drops them all
(`clear`). A shop is found through its home partition (contract §1), remembered by `home`;
lookups never remember one (only configured shops are asked their home: by the claims, the
intake and the API), so an id from outside, a dead letter's say, is never kept.

`Holdings` is daemon.service.checkpoint's state; the service and its other parts read it
(`checkpoint.held`), and only the checkpoint changes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from daemon.service.kafka import home_partition
from daemon.service.store import Owned


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
    """A claimed partition and what is owned through it (see the module docstring): `done`
    is its consumed position per topic (records of no owned shop below it are skipped when
    read again), `unacked` whether its shop-less outbox waits for acknowledgements."""

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


class Holdings:
    """The partitions this instance holds, one record each, and what is owned through them."""

    def __init__(self) -> None:
        self.partitions = 0  # input partition count, known from the first restore
        self._held: dict[int, Held] = {}
        self._homes: dict[str, int] = {}

    def home(self, shop_id: str) -> int:
        """The partition a shop's records belong on (contract §1)."""
        home = self._homes.get(shop_id)
        if home is None:
            home = self._homes[shop_id] = home_partition(shop_id.encode(), self.partitions)
        return home

    # ------------------------------------------------------------------------- reading

    def owned(self, part: int) -> OwnedPartition | None:
        """The record of a claimed partition."""
        held = self._held.get(part)
        return held if isinstance(held, OwnedPartition) else None

    def claimed(self) -> dict[int, OwnedPartition]:
        """Every claimed partition's record."""
        return {p: h for p, h in self._held.items() if isinstance(h, OwnedPartition)}

    def holding(self, shop_id: str) -> OwnedPartition | None:
        """The record of the partition through which `shop_id` is owned, if it is."""
        home = self._homes.get(shop_id)
        if home is None:
            return None
        held = self._held.get(home)
        if isinstance(held, OwnedPartition) and shop_id in held.shops:
            return held
        return None

    def owns(self, shop_id: str) -> bool:
        """Whether this instance owns the shop (served or set aside)."""
        return self.holding(shop_id) is not None

    def shop(self, shop_id: str) -> OwnedShop | None:
        held = self.holding(shop_id)
        return held.shops[shop_id] if held is not None else None

    def aside(self, shop_id: str) -> SetAside | None:
        """Why an owned shop is set aside, if it is."""
        held = self.holding(shop_id)
        return held.set_aside.get(shop_id) if held is not None else None

    def floor(self, shop_id: str, topic: str) -> int | None:
        """The first offset on `topic` an owned shop's stored state does not reflect."""
        shop = self.shop(shop_id)
        return shop.floors.get(topic) if shop is not None else None

    @property
    def partition_of(self) -> dict[str, int]:
        """Owned shops -> home partition."""
        return {s: p for p, held in self.claimed().items() for s in held.shops}

    @property
    def set_aside(self) -> dict[str, SetAside]:
        """Owned shops set aside -> why."""
        return {s: a for held in self.claimed().values() for s, a in held.set_aside.items()}

    @property
    def quarantined(self) -> dict[str, SetAside]:
        """Shops set aside until a restart or reload (engine failure, bad stored state)."""
        return {s: a for s, a in self.set_aside.items() if not a.retry}

    @property
    def waiting(self) -> dict[str, SetAside]:
        """Shops set aside until their Redis node answers again (retried by themselves)."""
        return {s: a for s, a in self.set_aside.items() if a.retry}

    @property
    def waiting_partitions(self) -> dict[int, str]:
        """Partitions assigned but not claimed (their bookkeeping did not answer) -> why."""
        return {p: h.cause for p, h in self._held.items() if isinstance(h, WaitingPartition)}

    # ------------------------------------------------------------------------ changing

    def put(self, part: int, held: Held) -> None:
        """`held` is now partition `part`'s record (a claim, a wait, a checkpoint)."""
        self._held[part] = held

    def change(
        self,
        part: int,
        *,
        shops: Mapping[str, OwnedShop] | None = None,
        set_aside: Mapping[str, SetAside] | None = None,
        unacked: Iterable[str] = (),
    ) -> None:
        """Replace a claimed partition's record with these of its shops changed: `shops`
        and `set_aside` merged into its own, `unacked` added."""
        held = self._held[part]
        assert isinstance(held, OwnedPartition)
        self._held[part] = replace(
            held,
            shops={**held.shops, **shops} if shops else held.shops,
            set_aside={**held.set_aside, **set_aside} if set_aside else held.set_aside,
            unacked_shops=held.unacked_shops.union(unacked),
        )

    def released(self, shop_id: str) -> SetAside:
        """An owned shop set aside is no longer: why it was."""
        part = self.home(shop_id)
        held = self._held[part]
        assert isinstance(held, OwnedPartition)
        aside = held.set_aside[shop_id]
        rest = {s: a for s, a in held.set_aside.items() if s != shop_id}
        self._held[part] = replace(held, set_aside=rest)
        return aside

    def drop(self, part: int) -> Held | None:
        """Let a partition go, and everything owned through it; its last record."""
        return self._held.pop(part, None)

    def clear(self, partition_count: int) -> None:
        """Hold nothing; the input topics have `partition_count` partitions."""
        self._held = {}
        if partition_count != self.partitions:
            self.partitions, self._homes = partition_count, {}
