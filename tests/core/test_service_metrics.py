"""The daemon's own metrics that need no broker: the garbage collector's pauses."""

from __future__ import annotations

import gc

from daemon.service.metrics import Metrics

FULL = 'fenliu_gc_pause_seconds_count{generation="2"}'


def _count(metrics: Metrics) -> float:
    line = next(ln for ln in metrics.render().decode().splitlines() if ln.startswith(FULL))
    return float(line.split()[-1])


def test_gc_pauses_are_timed_by_generation_until_unwatched() -> None:
    metrics = Metrics()
    assert _count(metrics) == 0.0  # exported from the start, every generation
    unwatch = metrics.watch_gc()
    try:
        gc.collect()  # a full collection
    finally:
        unwatch()
    assert _count(metrics) == 1.0
    gc.collect()
    assert _count(metrics) == 1.0
    assert metrics._on_gc not in gc.callbacks
