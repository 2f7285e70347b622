"""Peak day through the engine: does an event cost the same with 5,000 buyers in line?

Run with ``.venv/bin/python bench/peak.py``. It prints its figures and asserts nothing.

A shop of 200 agents at cap 50. The same mix of events — 1 inquiry of a new buyer : 10
messages in open sessions, buyer and agent taking turns — is timed twice on the engine:

- normal: 9,000 sessions open, so every inquiry of the batch is routed (the batch brings
  the shop to 10,000);
- peak: every agent at its cap (10,000 sessions) and 5,000 buyers already queued, so every
  inquiry of the batch joins the line and is told its position and estimated wait.

Sessions time out after 10 minutes and nobody gives up waiting, so nothing else happens
while the batch runs. Each state is built afresh for each repetition (best of REPEATS).
The scenario runs for queueing scope `shop` (one group) and for scope `groups` with three
groups sharing every agent. Last line: `ratio peak/normal = X` for the one-group shop
(issue 12's target: >= 0.5 through the engine).

Issue 12 also asks for the same measurement through the real daemon (SIGSTOP while the batch
is produced, time from SIGCONT to a marker's answer); that part is not written yet.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

from daemon.core.config import ShopConfig
from daemon.core.engine import Engine
from topics.events import (
    AgentStatus,
    AgentStatusChanged,
    Assignment,
    BuyerInquired,
    InputEvent,
    InquiryContext,
    MessageSent,
    QueueStatus,
    QueueUpdate,
)

SHOP = "peak"
T0 = 1_700_000_000_000
AGENTS = 200
CAP = 50
QUEUED = 5_000
INQUIRIES = 1_000  # in the timed batch
MESSAGES_PER_INQUIRY = 10
REPEATS = 3


def say(text: str) -> None:
    """Print a line at once."""
    print(text, flush=True)


def shop_config(groups: int) -> ShopConfig:
    """200 agents at cap 50; `groups` groups that all list every agent."""
    ids = [f"a{i:03d}" for i in range(AGENTS)]
    names = [f"g{i}" for i in range(groups)]
    queue: dict[str, Any] = {
        "enabled": True,
        "default_cap": CAP,
        "session_timeout": "10m",
        "update_interval": "1h",  # no periodic waiting flush inside the timed batch
    }
    if groups > 1:
        queue |= {"scope": "groups", "groups": names}
    return ShopConfig.model_validate(
        {
            "id": SHOP,
            "agents": [{"id": a} for a in ids],
            "groups": [
                {"name": name, "agents": ids, "match": {"intents": [name]}} for name in names
            ],
            "queue": queue,
        }
    )


class Rig:
    """Builds a shop in a given state, then the batch to time on it."""

    def __init__(self, config: ShopConfig) -> None:
        self.engine = Engine({SHOP: config})
        self.intents = [g.name for g in config.groups]  # inquiries take turns among groups
        self.now = T0
        self.ids = 0
        self.open: list[tuple[str, str]] = []  # (buyer, agent) of open sessions, in order
        self.queued = 0
        for agent in config.agents:
            self.feed(
                AgentStatusChanged(self.next("s"), SHOP, self.now, agent.id, AgentStatus.ONLINE)
            )

    def next(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}{self.ids}"

    def feed(self, event: InputEvent) -> None:
        for out in self.engine.handle(event, self.now):
            if isinstance(out, Assignment):
                self.open.append((out.buyer_id, out.agent_id))
            elif isinstance(out, QueueUpdate) and out.status is QueueStatus.QUEUED:
                self.queued += 1

    def inquiry(self) -> BuyerInquired:
        intent = self.intents[self.ids % len(self.intents)]
        context = InquiryContext(intent=intent)
        return BuyerInquired(self.next("i"), SHOP, self.now, self.next("b"), context)

    def fill(self, sessions: int, queued: int) -> None:
        """Open `sessions` sessions (each greeted by its agent), then queue `queued` buyers."""
        while len(self.open) < sessions:
            self.now += 1
            self.feed(self.inquiry())
        for buyer, agent in self.open:
            self.feed(MessageSent(self.next("m"), SHOP, self.now, buyer, "agent", agent))
        while self.queued < queued:
            self.now += 1
            self.feed(self.inquiry())

    def batch(self) -> list[InputEvent]:
        """1 inquiry : 10 messages, the messages in open sessions, buyer and agent in turn."""
        events: list[InputEvent] = []
        k = 0
        for _ in range(INQUIRIES):
            events.append(self.inquiry())
            for _ in range(MESSAGES_PER_INQUIRY):
                buyer, agent = self.open[k % len(self.open)]
                sender = "buyer" if (k // len(self.open)) % 2 == 0 else "agent"
                events.append(MessageSent(self.next("m"), SHOP, self.now, buyer, sender, agent))
                k += 1
        return events

    def time(self, events: list[InputEvent]) -> float:
        """Seconds to handle the batch, 1 ms of virtual time per event."""
        handle, now = self.engine.handle, self.now
        gc.collect()
        start = time.perf_counter()
        for event in events:
            now += 1
            handle(event, now)
        return time.perf_counter() - start


def rate(groups: int, sessions: int, queued: int) -> float:
    """Best events/s over REPEATS fresh rigs in the given state."""
    best = 0.0
    for _ in range(REPEATS):
        rig = Rig(shop_config(groups))
        rig.fill(sessions, queued)
        events = rig.batch()
        best = max(best, len(events) / rig.time(events))
    return best


def main() -> int:
    """Both states, for one group and for three groups sharing agents."""
    say(f"fenliu peak-day benchmark (engine): {AGENTS} agents at cap {CAP}, best of {REPEATS}")
    ratios = {}
    for groups in (3, 1):
        label = "one group (scope shop)" if groups == 1 else f"{groups} groups sharing agents"
        normal = rate(groups, AGENTS * CAP - INQUIRIES, 0)
        say(f"  {label}: normal {normal:,.0f} events/s (9,000 sessions, inquiries routed)")
        peak = rate(groups, AGENTS * CAP, QUEUED)
        say(f"  {label}: peak   {peak:,.0f} events/s (10,000 sessions, 5,000 queued)")
        ratios[groups] = peak / normal
        say(f"  {label}: ratio {ratios[groups]:.2f}")
    say(f"ratio peak/normal = {ratios[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
