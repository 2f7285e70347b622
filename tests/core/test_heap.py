"""The collector's policy (daemon.service.heap): what it freezes, when it searches again, and
the premise it rests on — the routing core makes no reference cycles while it routes, so
frozen state it drops is still freed by reference counting; and below it, that the C
allocator gives large blocks back once they are freed."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.config import load_shop_file
from daemon.core.config import ShopConfig
from daemon.core.engine import Engine
from daemon.lab.policy import AS_CONFIGURED, parse_policy
from daemon.lab.runner import simulate
from daemon.service.heap import FREEZE_EVERY_S, RESET_EVERY_S, Heap
from daemon.service.logs import get_logger

SHOPS = Path(__file__).resolve().parents[2] / "config" / "shops"


class Node:
    """Something that can sit in a reference cycle and be watched by a weak reference."""

    __slots__ = ("__weakref__", "other")

    def __init__(self) -> None:
        self.other: Node | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def thawed() -> Iterator[None]:
    """Leave the test process's collector as it found it."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def a_dropped_cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_survivors_are_frozen_once_a_second_at_a_settle(thawed: None) -> None:
    clock = Clock()
    heap = Heap(get_logger(), clock)
    heap.settled()
    assert gc.get_freeze_count() == 0  # nothing has lived a second yet
    clock.now += FREEZE_EVERY_S
    heap.settled()
    assert gc.get_freeze_count() > 0
    kept = Node()  # new since the freeze: a full collection still walks it
    assert gc.is_tracked(kept) and kept not in gc.get_objects(generation=2)


def test_a_cycle_frozen_before_it_was_dropped_is_collected_by_the_next_reset(
    thawed: None,
) -> None:
    clock = Clock()
    heap = Heap(get_logger(), clock)
    a, b = Node(), Node()
    a.other, b.other = b, a
    watched = weakref.ref(a)
    clock.now += FREEZE_EVERY_S
    heap.settled()  # the cycle is alive, so it is frozen
    del a, b
    gc.collect()
    assert watched() is not None  # frozen: never searched
    with capture_logs() as logs:
        heap.reset("restore")
    assert watched() is None
    (line,) = [entry for entry in logs if entry["event"] == "gc_reset"]
    assert line["reason"] == "restore" and line["collected"] >= 2
    assert line["frozen"] > 0 and line["pause_ms"] >= 0


def test_everything_is_searched_again_every_reset_period(thawed: None) -> None:
    clock = Clock()
    heap = Heap(get_logger(), clock)
    clock.now += FREEZE_EVERY_S
    heap.settled()
    watched = a_dropped_cycle()
    clock.now += FREEZE_EVERY_S
    heap.settled()  # a young collection first: a cycle already dropped is not kept
    assert watched() is None
    clock.now += RESET_EVERY_S - 2 * FREEZE_EVERY_S
    with capture_logs() as logs:
        heap.settled()
    assert [e["reason"] for e in logs if e["event"] == "gc_reset"] == ["periodic"]
    with capture_logs() as logs:
        clock.now += FREEZE_EVERY_S
        heap.settled()  # the period starts again from the reset
    assert logs == []


def test_the_engine_makes_no_reference_cycles_while_it_routes(thawed: None) -> None:
    """A scaled-down day of the big example shop (queues, groups, transfers, timeouts,
    conversion) through a tracking engine whose deltas are taken as the daemon takes them,
    with the collector off: from the first progress report on (before it the lab drops a
    throwaway engine of its own, and a dropped shop does hold cycles: what `Heap.reset` is
    for), nothing the engine dropped is left for the collector to find."""
    engines: list[Engine] = []
    reports: list[float] = []

    def make_engine(shops: Mapping[str, ShopConfig]) -> Engine:
        engines.append(Engine(shops, track=True))
        return engines[-1]

    def progress(done: float) -> None:
        engines[0].take_deltas()
        if not reports:  # free what came before the day started
            gc.set_debug(0)
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)
        reports.append(done)

    shop = load_shop_file(SHOPS / "big.toml")
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run = simulate(
            shop, "steady", seed=3, policy=parse_policy(AS_CONFIGURED), scale=1.0,
            make_engine=make_engine, progress=progress,
        )  # fmt: skip
        found = gc.collect()
        kinds = Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert len(reports) >= 5  # at least 4 × 4,096 actions of the day's busy part watched
    inquiries = run.trace.inquiries
    assert len(inquiries) > 1000
    assert any(i.queue_position is not None for i in inquiries)  # lines were waited in
    assert any(i.session_ended is not None for i in inquiries)  # and sessions closed
    assert found == 0, kinds.most_common(8)


def test_a_dropped_shop_does_hold_cycles(thawed: None) -> None:
    """Why every restore resets (and periodic resets collect after reloads): the shops they
    replace are cyclic garbage."""
    shop = load_shop_file(SHOPS / "big.toml")
    engine = Engine({shop.id: shop})
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        engine.reconfigure({}, 0)
        gc.collect()
        kinds = Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert kinds["AgentState"] == len(shop.agents) > 0


LARGE_BLOCKS = """
import os, sys
from daemon.service.heap import return_large_blocks

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

pinned = return_large_blocks() if sys.argv[1] == "pinned" else None
kept, start = [], 0
for round in range(6):  # a large record value, decoded, while small objects that stay are made
    value = os.urandom(8 * 1024 * 1024)
    text = value.decode("latin-1")
    small = [bytes(200) for _ in range(20_000)]
    kept.append(small[::50] + [bytes(64 * 1024)])  # survivors: one too big for a hole the
    # imports left, so it lies above the value in the heap whatever this process imported
    del value, text, small
    start = start or rss_kib()  # after the first round: what the small objects take is in
print(pinned, rss_kib() - start)
"""


def _retained_kib(mode: str) -> tuple[str, int]:
    """What a fresh interpreter holds more after freeing five more 8 MiB values (KiB)."""
    done = subprocess.run(
        [sys.executable, "-c", LARGE_BLOCKS, mode],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    pinned, retained = done.stdout.split()
    return pinned, int(retained)


def test_large_blocks_go_back_to_the_system_once_freed() -> None:
    """With the mmap threshold pinned (`return_large_blocks`, as `fenliu run` does), freed
    8 MiB values leave nothing behind; glibc's own dynamic threshold keeps them in the heap
    behind the small objects allocated meanwhile."""
    pinned, with_pin = _retained_kib("pinned")
    assert pinned == "True", "glibc's mallopt took the threshold"
    _, without = _retained_kib("default")
    assert with_pin < 4 * 1024, f"{with_pin} KiB held after the large values were freed"
    assert without > with_pin + 8 * 1024, (without, with_pin)
