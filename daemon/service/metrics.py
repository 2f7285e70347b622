"""Prometheus metrics, kept out of the routing logic (faust's Sensor pattern).

The service reports what happened through `Metrics` methods; gauges that describe the
engine's state (queues, sessions, agents, each queue's `max_wait`), consumer lag and
readiness are read at scrape time by a collector, so the hot path pays nothing for them.

Counters whose labels take a few known values start at 0 for each of them (rejects, reloads,
checkpoints): a series that appears only with its first failure gives `increase()` nothing
to compare, and the alert rules in deploy/prometheus would miss that first failure.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from topics.events import Assignment, OutputEvent, Rejected, RejectKind

if TYPE_CHECKING:
    from daemon.core.engine import Engine

LATENCY_BUCKETS = (0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
RejectReason = RejectKind  # the `reason` label of fenliu_rejected_total
REJECT_REASONS: tuple[RejectReason, ...] = get_args(RejectReason)
RESULTS = ("ok", "failed")  # of a reload, of a checkpoint
OUTPUT_TYPES = ("assignment", "session_closed", "queue_update", "rejected")
UNDELIVERED = ("oversized", "refused")  # the `cause` label of fenliu_outputs_undelivered_total


class Metrics:
    """Every metric the daemon exports, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "fenliu_events_in", "Input records consumed", ["topic", "type"], registry=r
        )
        self.rejects = Counter(
            "fenliu_rejects", "Input records sent to the dead-letter topic", ["reason"], registry=r
        )
        self.assignments = Counter(
            "fenliu_assignments", "Buyers given to agents", ["shop", "reason", "mode"], registry=r
        )
        self.outputs = Counter("fenliu_outputs", "Output records produced", ["type"], registry=r)
        self.decision_seconds = Histogram(
            "fenliu_decision_seconds",
            "Engine time per input event",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reloads = Counter("fenliu_reloads", "Configuration reloads", ["result"], registry=r)
        self.checkpoints = Counter(
            "fenliu_checkpoints", "Checkpoints written to Redis, by result", ["result"], registry=r
        )
        self.checkpoint_seconds = Histogram(
            "fenliu_checkpoint_seconds",
            "Time to write one batch's checkpoint to Redis",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
            registry=r,
        )
        self.restores = Counter(
            "fenliu_restores",
            "Restores of owned shops from Redis (start, rebalance, outage)",
            registry=r,
        )
        self.restore_seconds = Histogram(
            "fenliu_restore_seconds",
            "Time from a partition assignment (or outage) to consuming again: claim, load, "
            "re-send outboxes, seek",
            buckets=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0),
            registry=r,
        )
        self.handoff_seconds = Histogram(
            "fenliu_handoff_seconds",
            "The daemon's share of a partition hand-off: from the assignment until the first "
            "records of an owned partition arrive (restore and first fetch)",
            buckets=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0),
            registry=r,
        )
        self.gc_pause_seconds = Histogram(
            "fenliu_gc_pause_seconds",
            "Pauses of Python's cyclic garbage collector, by generation: the loop stands "
            "still meanwhile, so a full collection shows in the decisions' latency",
            ["generation"],
            buckets=(0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
            registry=r,
        )
        self._gc_pauses = [self.gc_pause_seconds.labels(str(g)) for g in range(3)]
        self._gc_started = 0.0
        for reason in REJECT_REASONS:
            self.rejects.labels(reason)
        for result in RESULTS:
            self.reloads.labels(result)
            self.checkpoints.labels(result)
        self.fenced = Counter(
            "fenliu_partitions_fenced",
            "Partitions found claimed by another instance at checkpoint (their batch was dropped)",
            registry=r,
        )
        self.rejects_cut = Counter(
            "fenliu_rejects_cut",
            "Dead letters that hold only an excerpt of their record (value over 16 KiB, or key "
            "over 1 KiB): the whole record stays in its source topic",
            registry=r,
        )
        self.undelivered = Counter(
            "fenliu_outputs_undelivered",
            "Outputs dropped from the outbox: too large to send (oversized) or refused for good "
            "by Kafka (refused); a routing output's shop is set aside (see the error log)",
            ["type", "cause"],
            registry=r,
        )
        for kind in OUTPUT_TYPES:
            for cause in UNDELIVERED:
                self.undelivered.labels(kind, cause)
        self.misrouted = Counter(
            "fenliu_misrouted",
            "Input records found on another partition than murmur2(key) mod partitions",
            ["topic"],
            registry=r,
        )

    def decided(self, outputs: list[OutputEvent]) -> None:
        """Count what the engine decided."""
        for out in outputs:
            if isinstance(out, Assignment):
                mode = out.mode.value if out.mode else ""
                self.assignments.labels(out.shop_id, out.reason.value, mode).inc()
            elif isinstance(out, Rejected):
                continue
            self.outputs.labels(type(out).__name__).inc()

    def watch(
        self,
        engine: Callable[[], Engine],
        lag: Callable[[], dict[str, int]],
        set_aside: Callable[[], Mapping[str, bool]],
        *,
        ready: Callable[[], bool],
    ) -> None:
        """Export the engine's state, consumer lag, the shops set aside (shop -> whether
        it waits for Redis, else it is quarantined) and readiness at every scrape."""
        self.registry.register(_StateCollector(engine, lag, set_aside, ready))

    def watch_gc(self) -> Callable[[], None]:
        """Time the garbage collector's pauses (a process-wide hook); return its removal."""
        gc.callbacks.append(self._on_gc)
        return lambda: gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_pauses[info["generation"]].observe(time.perf_counter() - self._gc_started)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(
        self,
        engine: Callable[[], Engine],
        lag: Callable[[], dict[str, int]],
        set_aside: Callable[[], Mapping[str, bool]],
        ready: Callable[[], bool],
    ) -> None:
        self._engine = engine
        self._lag = lag
        self._set_aside = set_aside
        self._ready = ready

    def collect(self) -> Iterator[Metric]:
        yield from self._engine_state()
        yield from self._service_state()

    def _engine_state(self) -> Iterator[Metric]:
        queue_len = GaugeMetricFamily(
            "fenliu_queue_length", "Buyers waiting", labels=["shop", "group"]
        )
        oldest = GaugeMetricFamily(
            "fenliu_queue_oldest_wait_seconds", "Wait of the longest-waiting buyer",
            labels=["shop", "group"],
        )  # fmt: skip
        max_wait = GaugeMetricFamily(
            "fenliu_queue_max_wait_seconds",
            "The shop's configured queue max_wait (only shops queueing with one)",
            labels=["shop"],
        )
        sessions = GaugeMetricFamily(
            "fenliu_agent_open_sessions", "Open sessions", labels=["shop", "agent"]
        )
        pending = GaugeMetricFamily(
            "fenliu_agent_pending", "Sessions awaiting the agent's reply", labels=["shop", "agent"]
        )
        status = GaugeMetricFamily("fenliu_agents", "Agents by status", labels=["shop", "status"])
        engine = self._engine()
        for shop_id, shop in engine.shops.items():
            now = shop.now
            for cand in shop.all_candidates():
                group = cand.group or "(pool)"
                queue_len.add_metric([shop_id, group], len(cand.queue))
                head = cand.head()
                oldest.add_metric([shop_id, group], (now - head[1]) / 1000 if head else 0.0)
            queue = engine.configs[shop_id].queue
            if queue.enabled and queue.max_wait > 0:
                max_wait.add_metric([shop_id], queue.max_wait / 1000)
            by_status: dict[str, int] = {"online": 0, "suspended": 0, "offline": 0}
            for agent in shop.agents.values():
                sessions.add_metric([shop_id, agent.id], agent.load)
                pending.add_metric([shop_id, agent.id], agent.pending)
                by_status[agent.status.value] += 1
            for name, count in by_status.items():
                status.add_metric([shop_id, name], count)
        yield from (queue_len, oldest, max_wait, sessions, pending, status)

    def _service_state(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "fenliu_consumer_lag", "Records not yet consumed", labels=["partition"]
        )
        for partition, value in self._lag().items():
            lag.add_metric([partition], value)
        quarantined = GaugeMetricFamily(
            "fenliu_shop_quarantined",
            "1 for each shop set aside (not served, records held); see the error log",
            labels=["shop"],
        )
        waiting = GaugeMetricFamily(
            "fenliu_shop_waiting",
            "1 for each shop waiting for its Redis node (retried every second; records held)",
            labels=["shop"],
        )
        for shop_id, retry in self._set_aside().items():
            (waiting if retry else quarantined).add_metric([shop_id], 1)
        ready = GaugeMetricFamily(
            "fenliu_ready", "1 while /readyz answers 200 (consuming, Kafka and Redis reachable)"
        )
        ready.add_metric([], 1 if self._ready() else 0)
        yield from (lag, quarantined, waiting, ready)
