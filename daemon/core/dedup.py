"""Bounded memory of recently seen event ids (contract §1.1: a repeated id is ignored)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class RecentIds(set[str]):
    """The last `capacity` ids added; the oldest is forgotten first.

    A set (membership is a C-level lookup on the hot path) that also remembers arrival
    order. Redelivery after a restart or rebalance repeats recent records, so a window of
    recent ids catches duplicates without remembering every id forever.
    """

    __slots__ = ("_order", "capacity")

    def __init__(self, capacity: int, ids: Iterable[str] = ()) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        super().__init__()
        self.capacity = capacity
        self._order: deque[str] = deque()
        for event_id in ids:
            self.add(event_id)

    def add(self, event_id: str) -> None:
        """Remember `event_id`, forgetting the oldest id when full."""
        if event_id not in self:
            self.add_new(event_id)

    def add_new(self, event_id: str) -> None:
        """`add` for an id the caller has just found missing (the hot path)."""
        order = self._order
        order.append(event_id)
        set.add(self, event_id)
        if len(order) > self.capacity:
            self.discard(order.popleft())

    def ids(self) -> list[str]:
        """Remembered ids, oldest first (for snapshots)."""
        return list(self._order)
