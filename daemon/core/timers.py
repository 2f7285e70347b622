"""A lazy timer heap keyed by (kind, key), in the manner of aioquic's single armed timer.

Owners ask `arm(kind, key, deadline)` whenever a deadline may have moved; the heap keeps at
most one live entry per (kind, key), the earliest asked for. When an entry comes due the
owner's `resolve(kind, key)` gives the real deadline now: None drops it, a later time re-arms
it, and only an entry whose time equals its real deadline fires. So firing follows real
deadlines in (deadline, kind, key) order — the same order a freshly restored heap gives,
which keeps snapshot → restore → continue identical to an uninterrupted run.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

OVERDUE_TIMER, UNANSWERED_TIMER, SESSION_TIMER, EXPIRY_TIMER, TICK_TIMER = 0, 1, 2, 3, 4
"""The kinds of a shop's timers: a waiting buyer's reply clock reaching the deadline, and
its first message reaching `reassign_after` unanswered (keyed by buyer id), a
session's timeout and a queued buyer's max_wait (keyed by buyer id), and a candidate's
periodic `waiting` updates (keyed by candidate key). Timers due at the same time fire in
this order: a buyer is overdue (and its agent busy) before anything else decided then."""

TimerKey = tuple[int, str]  # (kind, key)
Resolver = Callable[[int, str], int | None]


class TimerHeap:
    """Deadlines of one shop; see the module docstring."""

    __slots__ = ("_armed", "heap")

    def __init__(self) -> None:
        # (deadline, kind, key), earliest first; no entry is later than its real deadline,
        # so `heap and heap[0][0] <= now` says cheaply whether anything may be due (the hot
        # path reads it; only `arm` and `pop_due` change it)
        self.heap: list[tuple[int, int, str]] = []
        self._armed: dict[TimerKey, int] = {}

    def __len__(self) -> int:
        return len(self._armed)

    def arm(self, kind: int, key: str, deadline: int) -> None:
        """Make sure (kind, key) is looked at no later than `deadline`."""
        current = self._armed.get((kind, key))
        if current is not None and current <= deadline:
            return
        self._armed[(kind, key)] = deadline
        heapq.heappush(self.heap, (deadline, kind, key))

    def _settle(self, resolve: Resolver) -> None:
        """Drop superseded entries and move stale ones to their real deadline."""
        heap, armed = self.heap, self._armed
        while heap:
            deadline, kind, key = heap[0]
            if armed.get((kind, key)) != deadline:
                heapq.heappop(heap)
                continue
            real = resolve(kind, key)
            if real is not None and real <= deadline:
                return  # live (an owner that forgot to re-arm earlier is served late)
            heapq.heappop(heap)
            del armed[(kind, key)]
            if real is not None:
                self.arm(kind, key, real)

    def next_deadline(self, resolve: Resolver) -> int | None:
        """The earliest real deadline, or None when nothing is armed."""
        self._settle(resolve)
        return self.heap[0][0] if self.heap else None

    def pop_due(self, now: int, resolve: Resolver) -> tuple[int, int, str] | None:
        """The next (deadline, kind, key) whose real deadline is at or before `now`, disarmed."""
        if not self.heap or self.heap[0][0] > now:
            return None  # entries are never later than their real deadline
        self._settle(resolve)
        if not self.heap or self.heap[0][0] > now:
            return None
        deadline, kind, key = heapq.heappop(self.heap)
        del self._armed[(kind, key)]
        return deadline, kind, key
