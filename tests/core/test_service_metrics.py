"""The daemon's own metrics that need no broker: the garbage collector's pauses, the gauges
read at scrape time that the alert rules of deploy/prometheus use (readiness, each queue's
max_wait), and counters whose failures are exported as 0 before the first one."""

from __future__ import annotations

import gc

from daemon.core.config import ShopConfig
from daemon.core.engine import Engine
from daemon.service.metrics import Metrics

FULL = 'fenliu_gc_pause_seconds_count{generation="2"}'


def _count(metrics: Metrics) -> float:
    line = next(ln for ln in metrics.render().decode().splitlines() if ln.startswith(FULL))
    return float(line.split()[-1])


def _samples(metrics: Metrics) -> dict[str, float]:
    """Every sample line of the exposition: series -> value."""
    lines = metrics.render().decode().splitlines()
    return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in lines if ln[:1] != "#"}


def _shop(shop_id: str, queue: dict[str, object]) -> ShopConfig:
    return ShopConfig.model_validate(
        {"id": shop_id, "queue": queue, "agents": [{"id": "a1"}],
         "groups": [{"name": "g", "agents": ["a1"]}]}
    )  # fmt: skip


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


def test_readiness_is_a_gauge_read_at_each_scrape() -> None:
    ready = [False]
    metrics = Metrics()
    metrics.watch(lambda: Engine({}), dict, dict, ready=lambda: ready[0])
    assert _samples(metrics)["fenliu_ready"] == 0.0
    ready[0] = True
    assert _samples(metrics)["fenliu_ready"] == 1.0


def test_max_wait_is_exported_for_queueing_shops_that_have_one() -> None:
    shops = [
        _shop("limited", {"enabled": True, "max_wait": "90s"}),
        _shop("unlimited", {"enabled": True}),
        _shop("no-queue", {"max_wait": "90s"}),
    ]
    engine = Engine({shop.id: shop for shop in shops})
    metrics = Metrics()
    metrics.watch(lambda: engine, dict, dict, ready=lambda: True)
    max_waits = {k: v for k, v in _samples(metrics).items() if "max_wait" in k}
    assert max_waits == {'fenliu_queue_max_wait_seconds{shop="limited"}': 90.0}


def test_failures_and_rejects_are_exported_as_zero_before_the_first_one() -> None:
    """`increase()` sees a first failure only when the series existed before it."""
    samples = _samples(Metrics())
    for series in (
        'fenliu_reloads_total{result="failed"}',
        'fenliu_checkpoints_total{result="failed"}',
        'fenliu_rejects_total{reason="invalid"}',
        'fenliu_rejects_total{reason="unknown_shop"}',
        'fenliu_rejects_total{reason="refused"}',
        'fenliu_rejects_total{reason="misrouted"}',
    ):
        assert samples[series] == 0.0, series
