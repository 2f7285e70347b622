"""The daemon's own metrics that need no broker: the garbage collector's pauses, the gauges
the alert rules of deploy/prometheus use (readiness, each queue's max_wait), counters whose
failures are exported as 0 before the first one, and the snapshot a scrape is answered
with: built at a bounded rate a slice of shops at a time, never by the scrape, and small
enough at thousands of shops."""

from __future__ import annotations

import gc

import pytest

from daemon.core.config import ShopConfig
from daemon.core.engine import Engine
from daemon.service import metrics as metrics_module
from daemon.service.metrics import SNAPSHOT_EVERY_S, Metrics
from tests.grey_shop import grey_scenario
from tests.scenario import SHOP
from topics.events import AgentStatus, AgentStatusChanged, BuyerInquired, MessageSent

FULL = 'fenliu_gc_pause_seconds_count{generation="2"}'


def _count(metrics: Metrics) -> float:
    line = next(ln for ln in metrics.render().decode().splitlines() if ln.startswith(FULL))
    return float(line.split()[-1])


def _samples(metrics: Metrics) -> dict[str, float]:
    """Every sample line of the exposition: series -> value."""
    lines = metrics.render().decode().splitlines()
    return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in lines if ln[:1] != "#"}


def _latest(metrics: Metrics) -> dict[str, float]:
    """Every sample line of what a scrape is answered now (no build)."""
    lines = metrics.latest().decode().splitlines()
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
    """Even between snapshots (the loop may be recovering, building none)."""
    ready = [False]
    metrics = Metrics()
    metrics.watch(lambda: Engine({}), dict, dict, ready=lambda: ready[0])
    assert _latest(metrics)["fenliu_ready"] == 0.0
    ready[0] = True
    assert _latest(metrics)["fenliu_ready"] == 1.0


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
        'fenliu_http_limited_total{limit="rate"}',
        'fenliu_http_limited_total{limit="write_timeout"}',
    ):
        assert samples[series] == 0.0, series


def _many(count: int, agents: int = 3) -> Engine:
    """`count` shops of `agents` agents in one group, queueing with a max_wait."""
    return Engine({
        f"s{i:05d}": ShopConfig.model_validate({
            "id": f"s{i:05d}", "queue": {"enabled": True, "max_wait": "90s"},
            "agents": [{"id": f"a{j}"} for j in range(agents)],
            "groups": [{"name": "g", "agents": [f"a{j}" for j in range(agents)]}],
        })
        for i in range(count)
    })  # fmt: skip


def test_a_scrape_answers_the_snapshot_and_reads_nothing() -> None:
    """Between two builds every scrape gets the same bytes (but the two live gauges), and
    none of them reads the engine, the lag or the shops set aside."""
    engine = _many(3)
    reads: list[str] = []

    def watched(name: str, value: object) -> object:
        reads.append(name)
        return value

    now = [0.0]
    metrics = Metrics(clock=lambda: now[0])
    metrics.watch(
        lambda: watched("engine", engine), lambda: watched("lag", {}),  # type: ignore[arg-type,return-value]
        lambda: watched("aside", {}), ready=lambda: True,  # type: ignore[arg-type,return-value]
    )  # fmt: skip
    reads.clear()
    first = metrics.latest()
    engine.shops["s00000"].agents["a0"].pending = 7  # the engine moves on
    metrics.outputs.labels("Assignment").inc()
    now[0] += SNAPSHOT_EVERY_S / 2
    again = [metrics.latest() for _ in range(100)]
    assert reads == []
    cut = {b.split(b"# HELP fenliu_ready")[0] for b in (first, *again)}
    assert len(cut) == 1
    assert b'fenliu_shop_pending{shop="s00000"} 0.0' in first
    metrics.build()
    assert b'fenliu_shop_pending{shop="s00000"} 7.0' in metrics.latest()
    assert "engine" in reads


def test_snapshots_are_built_at_most_once_every_snapshot_every_s() -> None:
    now = [0.0]
    metrics = Metrics(clock=lambda: now[0])
    metrics.watch(lambda: _many(2), dict, dict, ready=lambda: True)
    builds = metrics.builds
    assert [metrics.refresh() for _ in range(1000)] == [False] * 1000
    now[0] += SNAPSHOT_EVERY_S
    assert metrics.refresh() and not metrics.refresh()
    now[0] += SNAPSHOT_EVERY_S * 0.9
    assert not any(metrics.refresh() for _ in range(1000))
    assert metrics.builds == builds + 1
    assert _latest(metrics)["fenliu_metrics_age_seconds"] == pytest.approx(SNAPSHOT_EVERY_S * 0.9)


def test_a_snapshot_of_many_shops_is_read_a_slice_per_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no time budget, each call reads STEP_SHOPS shops; the previous snapshot is
    served until the round has read every shop."""
    monkeypatch.setattr(metrics_module, "STEP_BUDGET_S", 0.0)
    engine = _many(1000)
    now = [0.0]
    metrics = Metrics(clock=lambda: now[0])
    metrics.watch(lambda: engine, dict, dict, ready=lambda: True)
    engine.shops["s00999"].agents["a0"].pending = 3
    now[0] += SNAPSHOT_EVERY_S
    calls = 1
    while not metrics.refresh():
        assert b'fenliu_shop_pending{shop="s00999"} 0.0' in metrics.latest()
        calls += 1
    assert calls == -(-1000 // metrics_module.STEP_SHOPS)
    assert b'fenliu_shop_pending{shop="s00999"} 3.0' in metrics.latest()


def test_the_series_stay_few_per_shop_unless_per_agent_is_asked() -> None:
    """3,000 shops of 3 agents in one group: 12 series a shop by default (the queue's
    length and oldest wait, max_wait, 3 statuses, sessions, pending, and 4 for its replies:
    last hour, within the deadline, overdue, reassignments); per agent adds 2 an agent and
    the shop's reply-time histogram (9 buckets, sum, count), and the reply series per
    group (here as many: one group)."""
    shops, agents = 3000, 3
    engine = _many(shops, agents)
    counts = {}
    for per_agent in (False, True):
        metrics = Metrics(per_agent=per_agent)
        metrics.watch(lambda: engine, dict, dict, ready=lambda: True)
        counts[per_agent] = len(_samples(metrics))
    fixed = len(_samples(Metrics()))  # the service's own counters and histograms
    assert counts[False] - fixed <= 12 * shops
    assert counts[True] - counts[False] == (2 * agents + 11) * shops


def test_a_snapshot_that_fails_keeps_the_last_one_and_never_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in the metrics must not stop the loop: the last snapshot is served (its age
    grows) and a new one is tried SNAPSHOT_EVERY_S later."""
    now = [0.0]
    metrics = Metrics(clock=lambda: now[0])
    metrics.watch(lambda: _many(2), dict, dict, ready=lambda: True)
    before = metrics.latest().split(b"# HELP fenliu_ready")[0]
    real = metrics_module._shop_lines

    def broken(*args: object, **kwargs: object) -> tuple[str, ...]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(metrics_module, "_shop_lines", broken)
    now[0] += SNAPSHOT_EVERY_S
    assert not metrics.refresh() and not metrics.building
    assert metrics.latest().split(b"# HELP fenliu_ready")[0] == before
    monkeypatch.setattr(metrics_module, "_shop_lines", real)
    assert not metrics.refresh(), "tried again only SNAPSHOT_EVERY_S later"
    now[0] += SNAPSHOT_EVERY_S
    assert metrics.refresh()


def test_assignments_are_counted_per_shop_reason_and_mode_in_the_snapshot() -> None:
    engine = _many(2, agents=1)
    metrics = Metrics()
    metrics.watch(lambda: engine, dict, dict, ready=lambda: True)
    online = AgentStatusChanged("e1", "s00001", 1000, "a0", AgentStatus.ONLINE)
    metrics.decided(engine.handle(online, 1000))
    for n in range(3):
        metrics.decided(engine.handle(BuyerInquired(f"i{n}", "s00001", 1001, f"b{n}"), 1001))
    assigned = {k: v for k, v in _samples(metrics).items() if "fenliu_assignments" in k}
    series = 'fenliu_assignments_total{mode="efficiency",reason="routed",shop="s00001"}'
    assert assigned == {series: 3.0}
    text = metrics.latest().decode()
    assert text.count("# TYPE fenliu_assignments_total counter") == 1


def test_reply_figures_are_exported_per_shop_or_per_group_with_the_histogram() -> None:
    """One reply within the deadline (40 s), one buyer left unanswered past it: the last
    hour counts 1 reply, 1 within, 1 buyer overdue now, summed per shop by default; with
    per_agent_metrics per group, and the shop's histogram has the 40 s reply."""
    shop = _shop("s", {"enabled": True})
    engine = Engine({"s": shop})
    t = 1_000_000
    engine.handle(AgentStatusChanged("e1", "s", t, "a1", AgentStatus.ONLINE), t)
    for n in (1, 2):
        engine.handle(BuyerInquired(f"i{n}", "s", t, f"b{n}"), t)
        engine.handle(MessageSent(f"m{n}", "s", t, f"b{n}", "buyer"), t)
    engine.handle(MessageSent("r1", "s", t + 40_000, "b1", "agent", agent_id="a1"), t + 40_000)
    late = t + 181_000  # b2's clock has run past the 3-minute deadline
    engine.on_timer(late)
    shop_sums = Metrics()
    shop_sums.watch(lambda: engine, dict, dict, ready=lambda: True)
    summed = {
        k: v
        for k, v in _samples(shop_sums).items()
        if "repl" in k or "overdue" in k or "reassign" in k
    }
    assert summed == {
        'fenliu_replies_last_hour{shop="s"}': 1.0,
        'fenliu_replies_within_deadline_last_hour{shop="s"}': 1.0,
        'fenliu_buyers_overdue{shop="s"}': 1.0,
        'fenliu_reassignments_total{shop="s",reason="unanswered"}': 0.0,
    }
    metrics = Metrics(per_agent=True)
    metrics.watch(lambda: engine, dict, dict, ready=lambda: True)
    samples = _samples(metrics)
    group = '{group="g",shop="s"}'
    assert samples[f"fenliu_replies_last_hour{group}"] == 1.0
    assert samples[f"fenliu_replies_within_deadline_last_hour{group}"] == 1.0
    assert samples[f"fenliu_buyers_overdue{group}"] == 1.0
    assert samples['fenliu_reassignments_total{group="g",shop="s",reason="unanswered"}'] == 0.0
    assert samples['fenliu_reply_seconds_bucket{le="30.0",shop="s"}'] == 0.0
    assert samples['fenliu_reply_seconds_bucket{le="60.0",shop="s"}'] == 1.0
    assert samples['fenliu_reply_seconds_bucket{le="+Inf",shop="s"}'] == 1.0
    assert samples['fenliu_reply_seconds_sum{shop="s"}'] == 40.0
    assert samples['fenliu_reply_seconds_count{shop="s"}'] == 1.0
    text = metrics.latest().decode()
    assert text.count("# TYPE fenliu_reply_seconds histogram") == 1


def test_a_running_grey_test_is_exported_per_arm_and_other_shops_have_no_series() -> None:
    """contract §3.7: per arm of the running experiment, labelled shop, experiment, arm: the
    counts, conversion and (arms but control) uplift with their intervals, p95 wait, replies
    within the deadline, and 1 for an arm a guardrail stopped; a finished experiment and a
    shop that runs none export nothing (only the families' HELP and TYPE lines)."""
    sc = grey_scenario()
    engine = sc.engine
    engine.reconfigure({SHOP: sc.config, "plain": _shop("plain", {})}, sc.now)
    metrics = Metrics()
    metrics.watch(lambda: engine, dict, dict, ready=lambda: True)
    tests = {k: v for k, v in _samples(metrics).items() if k.startswith("fenliu_experiment_")}
    assert all('shop="shop"' in k and 'experiment="t1"' in k for k in tests), tests
    control = '{arm="control",experiment="t1",shop="shop"}'
    treatment = '{arm="treatment",experiment="t1",shop="shop"}'
    assert tests[f"fenliu_experiment_buyers_total{treatment}"] == 60.0
    assert tests[f"fenliu_experiment_sessions_total{treatment}"] == 60.0
    assert tests[f"fenliu_experiment_converted_sessions_total{control}"] == 6.0
    assert tests[f"fenliu_experiment_conversion{control}"] == 0.1
    assert tests[f"fenliu_experiment_conversion_low{control}"] < 0.1
    assert tests[f"fenliu_experiment_conversion_high{control}"] > 0.1
    assert tests[f"fenliu_experiment_uplift{treatment}"] == -0.05
    assert tests[f"fenliu_experiment_uplift_low{treatment}"] < -0.05
    assert tests[f"fenliu_experiment_uplift_high{treatment}"] > -0.05
    assert f"fenliu_experiment_uplift{control}" not in tests
    assert tests[f"fenliu_experiment_p95_wait_seconds{control}"] == 0.0
    assert tests[f"fenliu_experiment_replies_within_deadline{control}"] == 1.0
    assert tests[f"fenliu_experiment_replies_within_deadline{treatment}"] == 0.0
    assert tests[f"fenliu_experiment_arm_stopped{control}"] == 0.0
    assert tests[f"fenliu_experiment_arm_stopped{treatment}"] == 1.0
    assert len(tests) == 12 + 9  # treatment's 12, control's 9 (no uplift)
    text = metrics.latest().decode()
    assert text.count("# TYPE fenliu_experiment_arm_stopped gauge") == 1
    engine.reconfigure({SHOP: _shop(SHOP, {}), "plain": _shop("plain", {})}, sc.now)  # t1 ends
    assert not [k for k in _samples(metrics) if k.startswith("fenliu_experiment_")]
