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
again — after every restore (a shop replaced leaves cycles behind) and every RESET_EVERY_S,
which bounds how long cyclic garbage of the shell's libraries, or of the shops a reload
rebuilt, can outlive its use (a reset after each reload would stop the loop ~0.2 s at 3,000
shops: contract §5, a reload never pauses routing). `gc_reset` logs what each reset found
and how long it stopped the loop.

Below the collector, the C allocator: `return_large_blocks` pins glibc's mmap threshold, so
that a large block (a record value of several MiB, read, decoded and dead-lettered) goes back
to the system when it is freed instead of staying in the heap behind smaller survivors
(glibc raises the threshold to the size of each mmapped block freed, after which such blocks
come from the heap: an 8 MiB value held ~25 MiB of RSS for a minute or more in the soak).
"""

from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Callable
from typing import Any

FREEZE_EVERY_S = 1.0  # survivors of this long are frozen at the next settle
RESET_EVERY_S = 600.0  # everything is searched for cycles this often
M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD = 128 * 1024  # glibc's initial threshold, kept from then on


def return_large_blocks() -> bool:
    """Pin the C allocator's mmap threshold at 128 KiB (see the module docstring): every
    block that large is mapped on its own and unmapped when freed. False where the C library
    has no `mallopt` that takes it (not glibc): nothing changes there."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


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

    def keep(self) -> None:
        """What was just made is long-lived (a reload's configuration, read off the loop, and
        the shop parts rebuilt from it): freeze it now, unsearched, rather than have the next
        young or full collection walk it (~50-70 ms each at 3,000 shops). Cyclic garbage made
        meanwhile waits for the next reset."""
        gc.freeze()
        self._frozen_at = self._clock()

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
