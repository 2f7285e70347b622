"""Python's garbage collector, told what is long-lived (docs/daemon.md, Memory).

A full collection walks every container the process holds and the loop stands still
meanwhile: with the daemon's imports alone that is ~10 ms, with a busy shop's state 30–65 ms,
several times a minute at high rates (bench/e2e.py). Almost all of it is long-lived — modules,
configuration, the shops' sessions, queues and dedup windows — and the routing core makes no
reference cycles while it routes (tests/core/test_heap.py), so what it drops is freed by
reference counting whatever the collector does.

So `Heap` moves what has lived through a settle into the collector's permanent generation
(`gc.freeze()`, after a young collection so that fresh cyclic garbage is collected rather
than kept), and a full collection only walks what is newer than that. What is frozen is never
searched for cycles: `reset` thaws it, collects everything once and freezes the survivors
again — after every restore and reload (a shop replaced or rebuilt leaves cycles behind) and
every RESET_EVERY_S, which bounds how long cyclic garbage of the shell's libraries can
outlive its use. `gc_reset` logs what each reset found and how long it stopped the loop.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

FREEZE_EVERY_S = 1.0  # survivors of this long are frozen at the next settle
RESET_EVERY_S = 600.0  # everything is searched for cycles this often


class Heap:
    """The collector's policy; `settled` and `reset` are called by the loop."""

    def __init__(self, log: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._clock = clock
        self._frozen_at = self._reset_at = clock()

    def settled(self) -> None:
        """Between batches: freeze the survivors, or reset when one is due."""
        now = self._clock()
        if now - self._reset_at >= RESET_EVERY_S:
            self.reset("periodic")
        elif now - self._frozen_at >= FREEZE_EVERY_S:
            gc.collect(1)
            gc.freeze()
            self._frozen_at = now

    def reset(self, reason: str) -> None:
        """Search everything for cycles once, then freeze what survives."""
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self._frozen_at = self._reset_at = self._clock()
        self._log.info(
            "gc_reset", reason=reason, collected=collected, frozen=gc.get_freeze_count(),
            pause_ms=round((time.perf_counter() - started) * 1000, 1),
        )  # fmt: skip
