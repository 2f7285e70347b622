"""Bounded memory of recently seen event ids (CONTRACT 1.1: a repeated id is ignored)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class RecentIds:
    """The last `capacity` ids added, with O(1) membership; the oldest is forgotten first.

    Redelivery after a restart or rebalance repeats recent records, so a window of recent ids
    catches duplicates without remembering every id forever.
    """

    __slots__ = ("_order", "_set", "capacity")

    def __init__(self, capacity: int, ids: Iterable[str] = ()) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._order: deque[str] = deque()
        self._set: set[str] = set()
        for event_id in ids:
            self.add(event_id)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._set

    def __len__(self) -> int:
        return len(self._order)

    def add(self, event_id: str) -> None:
        """Remember `event_id`, forgetting the oldest id when full."""
        if event_id in self._set:
            return
        self._order.append(event_id)
        self._set.add(event_id)
        if len(self._order) > self.capacity:
            self._set.discard(self._order.popleft())

    def ids(self) -> list[str]:
        """Remembered ids, oldest first (for snapshots)."""
        return list(self._order)
