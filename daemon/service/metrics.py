"""Prometheus metrics, kept out of the routing logic (faust's Sensor pattern).

The service reports what happened through `Metrics` methods; gauges that describe the
engine's state (queues, sessions, agents, each queue's `max_wait`), consumer lag and the
shops set aside are read into a snapshot, so the hot path pays nothing for them.

A scrape never reads anything (contract §6, "Watching never slows routing"): it is answered
the latest snapshot's bytes (`latest`), with only readiness and the snapshot's age read
live. The loop builds snapshots between batches (`refresh`): one begins at most every
SNAPSHOT_EVERY_S and reads the shops STEP_BUDGET_S at a time, so even 3,000 shops cost no
batch more than a few ms (a whole build takes ~20-40 ms there), and the snapshot is
published when the round has read them all. The text is written here, not by
prometheus_client (~10 µs a sample): the engine's gauges and `fenliu_assignments_total`, the
series that grow with the shops; the service's few counters and histograms stay in its
registry.

The shape stays cheap at thousands of shops: a shop's agents are summed
(`fenliu_shop_open_sessions`, `fenliu_shop_pending`; 8 series a shop, ~24,000 and ~1.3 MB
at 3,000 shops) unless `[http] per_agent_metrics` asks for the per-agent series too (2 more
an agent: ~2.5 times as many). Per shop, because the dashboard and the alerts look at shops
and queues, and an agent's load is in the JSON API and the console.

A shop running a grey test (contract §3.7) adds, per arm of it, the figures of
`daemon.core.experiment.report` (`_EXPERIMENT_FAMILIES`, labels shop, experiment, arm: 12
series an arm, 9 for control, at most 8 arms): counts, conversion and uplift with their
always-valid intervals, p95 wait, replies within the deadline, and whether a guardrail
stopped the arm. The round notes the reports of those shops as it reads them; the others
cost it one attribute read, and have no series.

Counters whose labels take a few known values start at 0 for each of them (rejects, reloads,
checkpoints): a series that appears only with its first failure gives `increase()` nothing
to compare, and the alert rules in deploy/prometheus would miss that first failure.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from daemon.core.experiment import report
from daemon.core.replies import REASSIGN_REASONS, REPLY_BUCKETS_MS
from daemon.service.http import LIMITED
from daemon.service.logs import get_logger
from topics.events import Assignment, OutputEvent, Rejected, RejectKind

if TYPE_CHECKING:
    from daemon.core.engine import Engine
    from daemon.core.shop import ShopEngine

LATENCY_BUCKETS = (0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
RejectReason = RejectKind  # the `reason` label of fenliu_rejects_total
REJECT_REASONS: tuple[RejectReason, ...] = get_args(RejectReason)
RESULTS = ("ok", "failed")  # of a reload, of a checkpoint
SNAPSHOT_EVERY_S = 1.0  # the loop starts a snapshot at most this often
STEP_BUDGET_S = 0.002  # the loop reads shops for a snapshot about this long per batch
STEP_SHOPS = 50  # shops read between two looks at the clock
OUTPUT_TYPES = ("assignment", "session_closed", "queue_update", "rejected")
UNDELIVERED = ("oversized", "refused")  # the `cause` label of fenliu_outputs_undelivered_total


class Metrics:
    """Every metric the daemon exports, and the snapshot a scrape is answered with."""

    def __init__(
        self, *, per_agent: bool = False, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_agent = per_agent
        self._clock = clock
        self._state: _State | None = None
        self._ready: Callable[[], bool] = lambda: False
        self._assigned: dict[str, dict[tuple[str, str], int]] = {}  # shop -> (reason, mode)
        self._snapshot = b""
        self._built = -math.inf  # clock() when the latest snapshot began
        self._round_at: float | None = None  # clock() when the one being read began
        self.builds = 0
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "fenliu_events_in", "Input records consumed", ["topic", "type"], registry=r
        )
        self.rejects = Counter(
            "fenliu_rejects", "Input records sent to the dead-letter topic", ["reason"], registry=r
        )
        self.outputs = Counter("fenliu_outputs", "Output records produced", ["type"], registry=r)
        self.decision_seconds = Histogram(
            "fenliu_decision_seconds",
            "Engine time per input event",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reloads = Counter("fenliu_reloads", "Configuration reloads", ["result"], registry=r)
        self.reload_successful = Gauge(
            "fenliu_config_last_reload_successful",
            "1 if the last configuration reload (or the start) succeeded, 0 if it failed",
            registry=r,
        )
        self.reload_success_time = Gauge(
            "fenliu_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load (the start, or a reload)",
            registry=r,
        )
        self.reload_successful.set(1)  # the configuration the daemon started with validated
        self.reload_success_time.set_to_current_time()
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
        self.http_limited = Counter(
            "fenliu_http_limited",
            "HTTP requests answered 429 over the rate, and answers cut off when the client "
            "did not read them (daemon/service/http.py)",
            ["limit"],
            registry=r,
        )
        for limit in LIMITED:
            self.http_limited.labels(limit)
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
                counts = self._assigned.get(out.shop_id)
                if counts is None:
                    counts = self._assigned[out.shop_id] = {}
                key = (out.reason.value, out.mode.value if out.mode else "")
                counts[key] = counts.get(key, 0) + 1
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
        it waits for Redis, else it is quarantined) in each snapshot, and readiness at
        every scrape; build the first snapshot."""
        self._state = _State(engine, lag, set_aside, self._assigned)
        self._ready = ready
        self.build()

    def reloaded(self, *, ok: bool) -> None:
        """A reload was applied (`ok`) or refused."""
        self.reloads.labels("ok" if ok else "failed").inc()
        self.reload_successful.set(1 if ok else 0)
        if ok:
            self.reload_success_time.set_to_current_time()

    def http_limit(self, limit: str) -> None:
        """Count a request or an answer the HTTP server's limits stopped (`on_limit`)."""
        self.http_limited.labels(limit).inc()

    def watch_gc(self) -> Callable[[], None]:
        """Time the garbage collector's pauses (a process-wide hook); return its removal."""
        gc.callbacks.append(self._on_gc)
        return lambda: gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_pauses[info["generation"]].observe(time.perf_counter() - self._gc_started)

    @property
    def building(self) -> bool:
        """Whether a snapshot is half read (the loop should not sleep meanwhile)."""
        return self._round_at is not None

    def refresh(self) -> bool:
        """Work on the next snapshot for about STEP_BUDGET_S (the loop calls this between
        batches): a round starts at most every SNAPSHOT_EVERY_S, reads a slice of the
        shops per call, and is published once it has read them all; whether it was."""
        if self._state is None:
            return False
        if self._round_at is None:
            if self._clock() - self._built < SNAPSHOT_EVERY_S:
                return False
            self._round_at = self._clock()
            self._state.begin()
        try:
            if not self._state.step(STEP_BUDGET_S, per_agent=self.per_agent):
                return False
            self._publish(self._state.text(per_agent=self.per_agent), self._round_at)
        except Exception as exc:  # noqa: BLE001 - a bug here must not stop routing
            get_logger().error("metrics_snapshot_failed", error=repr(exc)[:500])
            self._built, self._round_at = self._clock(), None  # tried again in a while
            return False
        return True

    def build(self) -> None:
        """Take a whole snapshot now (tests, benches; the loop calls `refresh`)."""
        state = self._state.render(per_agent=self.per_agent) if self._state else ""
        self._publish(state, self._clock())

    def _publish(self, state: str, at: float) -> None:
        """Make the registry's metrics, the assignments and `state` the snapshot of `at`."""
        assigned = "" if self._state else _assignments(self._assigned)  # else in `state`
        self._snapshot = b"".join((generate_latest(self.registry), (assigned + state).encode()))
        self._built, self._round_at = at, None
        self.builds += 1

    def latest(self) -> bytes:
        """What a scrape is answered: the latest snapshot, then readiness and the
        snapshot's age, read now (a bool and a clock: nothing is walked)."""
        age = max(0.0, self._clock() - self._built)
        ready = 1.0 if self._ready() else 0.0
        return self._snapshot + (_LIVE % (ready, age)).encode()

    def render(self) -> bytes:
        """Build a snapshot now and answer as a scrape would (tests, benches)."""
        self.build()
        return self.latest()


_LIVE = """# HELP fenliu_ready 1 while /readyz answers 200 (consuming, Kafka and Redis reachable)
# TYPE fenliu_ready gauge
fenliu_ready %r
# HELP fenliu_metrics_age_seconds Age of the snapshot the other metrics were read from
# TYPE fenliu_metrics_age_seconds gauge
fenliu_metrics_age_seconds %.3f
"""


def _esc(value: str) -> str:
    """A label value as the text format writes it."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _family(name: str, kind: str, text: str, lines: list[str]) -> str:
    """One metric family: its HELP and TYPE lines, then its samples."""
    head = f"# HELP {name} {text}\n# TYPE {name} {kind}\n"
    return head + "".join(line + "\n" for line in lines)


Assigned = Mapping[str, Mapping[tuple[str, str], int]]  # shop -> (reason, mode) -> count


def _assignments(assigned: Assigned) -> str:
    """fenliu_assignments_total of every shop, when no engine is watched."""
    lines = [_assigned_lines(_esc(shop), counts) for shop, counts in assigned.items()]
    return _family("fenliu_assignments_total", "counter", "Buyers given to agents", lines)


def _assigned_lines(shop: str, counts: Mapping[tuple[str, str], int] | None) -> str:
    """fenliu_assignments_total{shop,reason,mode} of one shop (label `shop` escaped)."""
    if not counts:
        return ""
    return "".join(
        f'fenliu_assignments_total{{mode="{mode}",reason="{reason}",shop="{shop}"}} '
        f"{float(count)!r}\n"
        for (reason, mode), count in counts.items()
    )


_FAMILIES = (  # the families read per shop: name, type, help; in this order
    ("fenliu_assignments_total", "counter", "Buyers given to agents"),
    ("fenliu_queue_length", "gauge", "Buyers waiting"),
    ("fenliu_queue_oldest_wait_seconds", "gauge", "Wait of the longest-waiting buyer"),
    ("fenliu_queue_max_wait_seconds", "gauge",
     "The shop's configured queue max_wait (only shops queueing with one)"),
    ("fenliu_agents", "gauge", "Agents by status"),
    ("fenliu_shop_open_sessions", "gauge", "Open sessions of the shop's agents"),
    ("fenliu_shop_pending", "gauge", "Sessions awaiting a reply from the shop's agents"),
    ("fenliu_replies_last_hour", "gauge",
     "Agents' replies over the last hour (contract §3.6; per group with per_agent_metrics)"),
    ("fenliu_replies_within_deadline_last_hour", "gauge",
     "Of those, replies within the shop's [replies] deadline"),
    ("fenliu_buyers_overdue", "gauge", "Buyers whose reply clock has run past the deadline"),
    ("fenliu_reassignments_total", "counter", "Buyers moved to another agent, by reason"),
    ("fenliu_agent_open_sessions", "gauge",
     "Open sessions (per agent: [http] per_agent_metrics)"),
    ("fenliu_agent_pending", "gauge", "Sessions awaiting the agent's reply (per agent)"),
    ("fenliu_reply_seconds", "histogram",
     "Reply times in the shop's sessions, all groups ([http] per_agent_metrics)"),
)  # fmt: skip
_PER_AGENT = 3  # the last three families, only with per_agent

_EXPERIMENT_FAMILIES = (  # per arm of a running grey test: name, type, help; in this order
    ("fenliu_experiment_buyers_total", "counter",
     "Inquiries of the arm's buyers that got a session or a place in line (contract §3.7)"),
    ("fenliu_experiment_sessions_total", "counter", "Sessions the arm's buyers opened"),
    ("fenliu_experiment_converted_sessions_total", "counter",
     "Of those, the sessions an order was credited to"),
    ("fenliu_experiment_conversion", "gauge",
     "Converted sessions / sessions of the arm (no sample before its first session)"),
    ("fenliu_experiment_conversion_low", "gauge",
     "Lower bound of the conversion's always-valid 95% interval"),
    ("fenliu_experiment_conversion_high", "gauge",
     "Upper bound of the conversion's always-valid 95% interval"),
    ("fenliu_experiment_uplift", "gauge",
     "The arm's conversion less control's (0.02: +2 points; arms but control)"),
    ("fenliu_experiment_uplift_low", "gauge",
     "Lower bound of the uplift's always-valid 95% interval"),
    ("fenliu_experiment_uplift_high", "gauge",
     "Upper bound of the uplift's always-valid 95% interval"),
    ("fenliu_experiment_p95_wait_seconds", "gauge",
     "95th percentile of the time the arm's sessions waited in line (0: served at once)"),
    ("fenliu_experiment_replies_within_deadline", "gauge",
     "Share of the agents' replies to the arm's buyers within the [replies] deadline"),
    ("fenliu_experiment_arm_stopped", "gauge",
     "1 once a guardrail stopped the arm (its buyers get control's policy; see the log's "
     "experiment_arm_stopped), else 0"),
)  # fmt: skip


class _State:
    """What a snapshot reads of the engine and the service. The shops are read a slice at
    a time (`step`: their gauges and their assignment counts), each shop's lines kept
    until the round has visited every shop; `text` then joins them with the service's
    gauges. The counts of a shop no longer in the engine (removed by a reload) are not
    exported any more."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        lag: Callable[[], dict[str, int]],
        set_aside: Callable[[], Mapping[str, bool]],
        assigned: Assigned,
    ) -> None:
        self._engine = engine
        self._lag = lag
        self._set_aside = set_aside
        self._assigned = assigned
        self._todo: list[str] = []  # shops the round has still to visit, last first
        self._lines: list[tuple[str, ...]] = []  # per shop visited: its lines per family
        self._tests: list[tuple[str, dict[str, Any]]] = []  # (shop, report) of running tests

    def begin(self) -> None:
        """Start a round over the engine's shops."""
        self._todo = list(reversed(self._engine().shops))
        self._lines = []
        self._tests = []

    def step(self, budget_s: float, *, per_agent: bool) -> bool:
        """Visit shops for about `budget_s` (at least one); whether the round is done."""
        engine = self._engine()
        until = time.perf_counter() + budget_s
        todo, lines, assigned, tests = self._todo, self._lines, self._assigned, self._tests
        while todo:
            for _ in range(min(len(todo), STEP_SHOPS)):
                shop_id = todo.pop()
                shop = engine.shops.get(shop_id)
                if shop is not None:  # else: removed by a reload since the round began
                    counts = assigned.get(shop_id)
                    lines.append(_shop_lines(shop_id, shop, engine, counts, per_agent=per_agent))
                    running = shop.state.experiments.running
                    if running is not None:
                        tests.append((shop_id, report(running)))
            if time.perf_counter() >= until:
                break
        return not todo

    def text(self, *, per_agent: bool) -> str:
        """The gauges of the finished round and the service's, as exposition text."""
        count = len(_FAMILIES) - (0 if per_agent else _PER_AGENT)
        lines = self._lines
        parts = [
            f"# HELP {name} {text}\n# TYPE {name} {kind}\n" + "".join(s[i] for s in lines)
            for i, (name, kind, text) in enumerate(_FAMILIES[:count])
        ]
        self._lines = []
        tests, self._tests = self._tests, []
        return "".join((*parts, _experiment_text(tests), self._service_state()))

    def render(self, *, per_agent: bool) -> str:
        """Everything now, in one go."""
        self.begin()
        self.step(math.inf, per_agent=per_agent)
        return self.text(per_agent=per_agent)

    def _service_state(self) -> str:
        lag = [
            f'fenliu_consumer_lag{{partition="{_esc(p)}"}} {float(v)!r}'
            for p, v in self._lag().items()
        ]
        quarantined: list[str] = []
        waiting: list[str] = []
        for shop_id, retry in self._set_aside().items():
            name = "fenliu_shop_waiting" if retry else "fenliu_shop_quarantined"
            (waiting if retry else quarantined).append(f'{name}{{shop="{_esc(shop_id)}"}} 1.0')
        return "".join((
            _family("fenliu_consumer_lag", "gauge", "Records not yet consumed", lag),
            _family(
                "fenliu_shop_quarantined", "gauge",
                "1 for each shop set aside (not served, records held); see the error log",
                quarantined,
            ),
            _family(
                "fenliu_shop_waiting", "gauge",
                "1 for each shop waiting for its Redis node (retried every second; records "
                "held)", waiting,
            ),
        ))  # fmt: skip


def _shop_lines(
    shop_id: str,
    shop: ShopEngine,
    engine: Engine,
    assigned: Mapping[tuple[str, str], int] | None,
    *,
    per_agent: bool,
) -> tuple[str, ...]:
    """A shop's sample lines, one string per family of `_FAMILIES`."""
    s = _esc(shop_id)
    now = shop.now
    queue_len = oldest = max_wait = agent_sessions = agent_pending = ""
    for cand in shop.all_candidates():
        labels = f'{{group="{_esc(cand.group or "(pool)")}",shop="{s}"}} '
        queue_len += f"fenliu_queue_length{labels}{float(len(cand.line.items))!r}\n"
        head = cand.line.head()
        wait = (now - head.arrival) / 1000 if head else 0.0
        oldest += f"fenliu_queue_oldest_wait_seconds{labels}{wait!r}\n"
    config = engine.configs.get(shop_id)
    if config is not None and config.queue.enabled and config.queue.max_wait > 0:
        max_wait = f'fenliu_queue_max_wait_seconds{{shop="{s}"}} {config.queue.max_wait / 1000!r}\n'
    online = suspended = offline = load = owed = 0
    for agent in shop.agents.values():
        value = agent.status.value
        if value == "online":
            online += 1
        elif value == "suspended":
            suspended += 1
        else:
            offline += 1
        load += agent.load
        owed += agent.pending
        if per_agent:
            labels = f'{{agent="{_esc(agent.id)}",shop="{s}"}} '
            agent_sessions += f"fenliu_agent_open_sessions{labels}{agent.load}.0\n"
            agent_pending += f"fenliu_agent_pending{labels}{agent.pending}.0\n"
    status = (
        f'fenliu_agents{{shop="{s}",status="online"}} {online}.0\n'
        f'fenliu_agents{{shop="{s}",status="suspended"}} {suspended}.0\n'
        f'fenliu_agents{{shop="{s}",status="offline"}} {offline}.0\n'
    )
    sessions = f'fenliu_shop_open_sessions{{shop="{s}"}} {load}.0\n'
    pending = f'fenliu_shop_pending{{shop="{s}"}} {owed}.0\n'
    return (
        _assigned_lines(s, assigned), queue_len, oldest, max_wait, status, sessions, pending,
        *_reply_lines(s, shop, per_group=per_agent), agent_sessions, agent_pending,
        _histogram_lines(s, shop) if per_agent else "",
    )  # fmt: skip


def _reply_lines(s: str, shop: ShopEngine, *, per_group: bool) -> tuple[str, str, str, str]:
    """A shop's reply families (`_FAMILIES`): the last hour's replies and those within the
    deadline, the buyers overdue now, the reassignments by reason; summed over its groups
    (4 series a shop), or per group with `per_agent_metrics`."""
    now = shop.now
    by_group = shop.sessions.overdue_by_group
    rows: list[tuple[str, int, int, int, dict[str, int]]] = []
    for group in shop.config.groups:
        figures = shop.routing.cands[group.name].replies
        count, kept = figures.last_hour(now)
        rows.append((group.name, count, kept, by_group.get(group.name, 0), figures.reassigned))
    if not per_group:
        moved: dict[str, int] = {}
        for row in rows:
            for reason, n in row[4].items():
                moved[reason] = moved.get(reason, 0) + n
        rows = [("", sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows),
                 moved)]  # fmt: skip
    replies = within = overdue = reassigned = ""
    for name, count, kept, late, moves in rows:
        where = f'group="{_esc(name)}",shop="{s}"' if per_group else f'shop="{s}"'
        replies += f"fenliu_replies_last_hour{{{where}}} {count}.0\n"
        within += f"fenliu_replies_within_deadline_last_hour{{{where}}} {kept}.0\n"
        overdue += f"fenliu_buyers_overdue{{{where}}} {late}.0\n"
        for reason in REASSIGN_REASONS:
            reassigned += (
                f'fenliu_reassignments_total{{{where},reason="{reason}"}} '
                f"{moves.get(reason, 0)}.0\n"
            )
    return replies, within, overdue, reassigned


def _histogram_lines(s: str, shop: ShopEngine) -> str:
    """The shop's reply-time histogram, its groups' buckets summed (per group in the API:
    11 series a group would be too many at thousands of shops)."""
    buckets = [0] * (len(REPLY_BUCKETS_MS) + 1)
    total_ms = 0
    for group in shop.config.groups:
        figures = shop.routing.cands[group.name].replies
        for i, n in enumerate(figures.hist):
            buckets[i] += n
        total_ms += figures.hist_sum_ms
    lines, running = "", 0
    bounds = [repr(ms / 1000) for ms in REPLY_BUCKETS_MS] + ["+Inf"]
    for bound, n in zip(bounds, buckets, strict=True):
        running += n
        lines += f'fenliu_reply_seconds_bucket{{le="{bound}",shop="{s}"}} {running}.0\n'
    return lines + (
        f'fenliu_reply_seconds_sum{{shop="{s}"}} {total_ms / 1000!r}\n'
        f'fenliu_reply_seconds_count{{shop="{s}"}} {running}.0\n'
    )


def _experiment_text(tests: list[tuple[str, dict[str, Any]]]) -> str:
    """The `_EXPERIMENT_FAMILIES` of the running grey tests, from their reports (a value
    the report has as null, such as a conversion before any session, has no sample)."""
    samples: list[list[str]] = [[] for _ in _EXPERIMENT_FAMILIES]
    for shop_id, rep in tests:
        where = f'experiment="{_esc(rep["name"])}",shop="{_esc(shop_id)}"}} '
        for row in rep["arms"]:
            labels = f'{{arm="{_esc(row["arm"])}",{where}'
            for i, value in enumerate(_arm_values(row)):
                if value is not None:
                    samples[i].append(f"{_EXPERIMENT_FAMILIES[i][0]}{labels}{float(value)!r}")
    return "".join(
        _family(name, kind, text, lines)
        for (name, kind, text), lines in zip(_EXPERIMENT_FAMILIES, samples, strict=True)
    )


def _arm_values(row: dict[str, Any]) -> tuple[float | None, ...]:
    """One arm's row of a report as the values of `_EXPERIMENT_FAMILIES`, in order."""
    conversion, up = row["conversion"], row["uplift"] or {}
    return (
        row["buyers"], row["sessions"], row["converted"],
        conversion["value"], conversion["low"], conversion["high"],
        up.get("points"), up.get("low"), up.get("high"),
        row["p95_wait_s"]["value"], row["replies_within_deadline"]["value"],
        0 if row["stopped"] is None else 1,
    )  # fmt: skip
