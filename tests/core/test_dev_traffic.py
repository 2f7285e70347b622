"""`fenliu dev`'s simulated shop floor (daemon/dev/traffic.py) and its live view
(daemon/dev/view.py), checked against the real routing engine in virtual time (no broker, no
clock): deterministic, valid on the wire, bounded by its duration. The command itself, with
a real broker and Redis: tests/system/test_dev.py.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter

from rich.console import Console

from daemon.config import load_shop_file
from daemon.core.engine import Engine, EventRejected
from daemon.dev.demo import DEFAULT_SHOP
from daemon.dev.traffic import Traffic, TrafficSettings, topic_kind
from daemon.dev.view import Monitor, decode_output
from daemon.service.metrics import Metrics
from topics.codec import decode, encode
from topics.events import (
    Assignment,
    AssignReason,
    CloseReason,
    InputEvent,
    Mode,
    OutputEvent,
    QueueStatus,
    QueueUpdate,
    Rejected,
    SessionClosed,
)

T0 = 1_750_000_000_000


def simulate(seconds: float, seed: int = 7) -> tuple[list[InputEvent], list[OutputEvent]]:
    """The traffic of the big shop fed to the engine, its decisions fed back, in virtual time."""
    shop = load_shop_file(DEFAULT_SHOP)
    traffic = Traffic(shop, TrafficSettings(seed=seed, duration_s=seconds), start_ms=T0)
    engine = Engine({shop.id: shop})
    sent: list[InputEvent] = []
    decided: list[OutputEvent] = []

    def feed_back(outputs: list[OutputEvent], now: int) -> None:
        decided.extend(outputs)
        for out in outputs:
            traffic.observe(out, now)

    while (now := traffic.next_due()) is not None:
        while (deadline := engine.next_deadline()) is not None and deadline <= now:
            feed_back(engine.on_timer(deadline), deadline)
        for event in traffic.due(now):
            sent.append(event)
            try:
                feed_back(engine.handle(event, now), now)
            except EventRejected as rejected:
                assert "can take the transfer" in rejected.reason, rejected.reason
    return sent, decided


def test_traffic_is_deterministic_for_a_seed() -> None:
    first, second = simulate(60), simulate(60)
    assert first == second
    assert simulate(60, seed=8)[0] != first[0]


def test_traffic_exercises_the_routing_rules_and_stops_at_its_duration() -> None:
    sent, decided = simulate(180)
    assert all(T0 <= event.ts <= T0 + 180_000 for event in sent)
    reasons = Counter(o.reason for o in decided if isinstance(o, Assignment))
    expected = {AssignReason.ROUTED, AssignReason.DEQUEUED, AssignReason.ACTIVE_SESSION}
    assert expected | {AssignReason.TRANSFER, AssignReason.REPEAT_ENTRY} <= set(reasons)
    closed = {o.reason for o in decided if isinstance(o, SessionClosed)}
    assert {CloseReason.AGENT_OFFLINE, CloseReason.TRANSFERRED} <= closed
    statuses = {o.status for o in decided if isinstance(o, QueueUpdate)}
    assert {QueueStatus.QUEUED, QueueStatus.LEFT} <= statuses
    kinds = Counter(type(event).__name__ for event in sent)
    assert kinds["OrderPlaced"] and kinds["BuyerLeft"] and kinds["AgentStatsReported"]


def test_traffic_events_survive_the_wire() -> None:
    sent, _ = simulate(20)
    for event in sent:
        assert decode(encode(event), event.shop_id.encode(), topic_kind(event)) == event


def test_the_view_reads_back_every_output_event() -> None:
    outputs: list[OutputEvent] = [
        Assignment("asg:i", "s", 1, "i", "b", "a", "g", AssignReason.ROUTED, Mode.AVERAGE, 0),
        Assignment("asg:j", "s", 1, "j", "b", "a", None, AssignReason.STICKY, None, 5),
        SessionClosed("end:i", "s", 2, "b", "a", CloseReason.TIMEOUT),
        QueueUpdate("q:i:1", "s", 3, "i", "b", "g", QueueStatus.QUEUED, 2, 30),
        QueueUpdate("q:i:2", "s", 4, "i", "b", None, QueueStatus.LEFT),
        Rejected("rej:t:0:1", None, 5, "no", "t", 0, 1, "{"),
        Rejected("rej:t:0:2", "s", 5, "no", "t", 0, 2, "{", "utf-8", "misrouted"),
    ]
    assert [decode_output(encode(out)) for out in outputs] == outputs
    assert decode_output(b"not json") is None
    assert decode_output(b'{"type": "assignment"}') is None


def test_the_view_shows_queues_loads_rates_and_decisions_from_real_metrics() -> None:
    """The Monitor reads the daemon's own /metrics text (the metric names it relies on)."""
    shop = load_shop_file(DEFAULT_SHOP)
    traffic = Traffic(shop, TrafficSettings(duration_s=30), start_ms=T0)
    engine = Engine({shop.id: shop})
    monitor = Monitor(shop, traffic, "127.0.0.1:1")
    for event in traffic.due(T0 + 10_000):
        with contextlib.suppress(EventRejected):
            for out in engine.handle(event, T0 + 10_000):
                traffic.observe(out, T0 + 10_000)
                monitor.observe(out)
    metrics = Metrics(per_agent=True)  # as `fenliu dev` configures its daemon
    metrics.watch(lambda: engine, dict, dict, ready=lambda: True)
    monitor.scrape(metrics.render().decode())
    assert monitor.agents and sum(load for load, _ in monitor.agents.values()) > 0
    assert set(monitor.queues) >= {g.name for g in shop.groups}
    screen = io.StringIO()
    console = Console(file=screen, width=120, height=60, color_system=None)
    console.print(monitor.render(12.0, console))
    for text in ("Queues", "presale", "Assignments (last 10 s)", "pre-01", "Last decisions"):
        assert text in screen.getvalue()
    assert monitor.progress(12.0).startswith("[  12s] buyers ")
    assert any(line.startswith("  assignments  ") for line in monitor.summary(12.0, 2.0, 618))
