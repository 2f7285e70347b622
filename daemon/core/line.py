"""A candidate's line: its queued buyers in the order they will be served, and when its
`waiting` updates are due.

The queue, `items`, is a sorted list of `QueueItem`s, ordered by (rank, arrival, seq), rank
being −priority, or arrival − priority × `queue.priority_aging` with aging (`QueueItem`):
dequeue, removal and a buyer's position all cost O(log n), and time passing moves nobody.

The flush schedule: a change in line (a buyer joins or leaves, an estimate may move) marks
the line; its buyers' `waiting` updates then go out at the shop's next TICK for it,
`queue.update_interval` after the previous round at the earliest (`mark`, `flushed`, `due`).
`last_tick` is when the previous round went out and `dirty` whether a round is due; both are
learned state, checkpointed with the candidate (`candidate.runtime_of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sortedcontainers import SortedList

from daemon.core.model import QueueItem


class Line:
    """One candidate's queue and flush schedule; see the module docstring."""

    __slots__ = ("dirty", "items", "last_tick")

    def __init__(self) -> None:
        self.items: SortedList[QueueItem] = SortedList()  # read freely; changed here only
        self.last_tick = -(10**15)  # when the last round of `waiting` updates went out
        self.dirty = False  # a round is due (at `due`)

    def add(self, item: QueueItem) -> None:
        """A buyer joins the line at its place."""
        self.items.add(item)

    def remove(self, item: QueueItem) -> None:
        """A buyer leaves the line."""
        self.items.remove(item)

    def position(self, item: QueueItem) -> int:
        """1-based place in line of `item` (of a buyer not in line: where it would stand)."""
        return int(self.items.bisect_left(item)) + 1

    def head(self) -> QueueItem | None:
        """The first buyer in line, or None."""
        items = self.items
        return items[0] if items else None

    # ---------------------------------------------------------------------- flush schedule

    def mark(self, now: int, interval: int, within: int | None = None) -> int | None:
        """The line needs a round of `waiting` updates: due `interval` after the previous
        one, at the earliest `now`; or, with `within`, that long from now (the rest of a
        long line, as if the previous round had gone out `interval − within` ago). Returns
        when it is due, for the caller to arm the tick, or None if it was marked already."""
        if self.dirty:
            return None
        self.dirty = True
        if within is None:
            self.last_tick = max(self.last_tick, now - interval)
        else:
            self.last_tick = now + within - interval
        return self.last_tick + interval

    def flushed(self, now: int) -> None:
        """A round of `waiting` updates goes out now."""
        self.dirty = False
        self.last_tick = now

    def due(self, interval: int) -> int | None:
        """When the marked round of updates is due, or None if none is."""
        return self.last_tick + interval if self.dirty else None

    # ----------------------------------------------------------------------- learned state

    def learned(self) -> dict[str, object]:
        """The flush schedule as plain data (the queue is rebuilt from the buyers)."""
        return {"last_tick": self.last_tick, "dirty": self.dirty}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take the schedule `learned` gave (a missing field keeps its default)."""
        self.last_tick = data.get("last_tick", self.last_tick)
        self.dirty = data.get("dirty", self.dirty)
