"""`fenliu demo`: a scripted evening in a shop, run through the routing engine alone.

`fenliu demo` feeds a fixed scenario to the sans-I/O engine in virtual time (no broker, no
Redis, no clock) and prints every decision as one line, then a summary of agents and queues
(`fenliu dev` runs the real daemon with a broker and Redis instead). The scenario (seeded,
so every run is the same) walks through the rules of docs/contract.md §3 on the example
shop `config/shops/big.toml`:

    20:00  every agent comes online; conversion figures arrive for the presale team
    20:00  a burst of buyers (vip, presale, aftersale, unmatched) who chat with their agents
    20:02  a buyer clicks "contact us" again (active session); an agent is suspended (挂起)
    20:03  an agent goes offline: its sessions close; one of its buyers comes back (repeat
           entry to a colleague); a buyer is transferred to another group
    20:05  most of the overflowing group leaves for a briefing while a rush arrives: buyers
           queue with positions and estimates, one leaves, idle sessions time out and free
           slots, those still waiting at max_wait overflow to the next group
    20:30+ buyers return: repeat entry to the same agent, sticky recent contact an hour on

Other shop files work too (`fenliu demo --shop FILE`): steps that need a group or agent the
shop does not have are skipped. How decisions and the closing tables read is in demo_text.py.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.text import Text

from daemon.config import ConfigError, load_shop_file
from daemon.core.config import GroupConfig, ShopConfig
from daemon.core.engine import Engine, EventRejected
from daemon.dev.demo_text import TZ, clock, describe, plural, print_summary, span
from daemon.dev.kinds import UNMATCHED, contexts_by_kind
from topics.events import (
    AgentStatsReported,
    AgentStatus,
    AgentStatusChanged,
    Assignment,
    BuyerInquired,
    BuyerLeft,
    InputEvent,
    InquiryContext,
    MessageSent,
    OutputEvent,
    QueueUpdate,
    SessionClosed,
    SessionTransferred,
)

DEFAULT_SHOP = Path(__file__).resolve().parents[2] / "config" / "shops" / "big.toml"
START = datetime(2025, 6, 18, 20, 0, tzinfo=TZ)  # the 618 evening rush
T0 = int(START.timestamp() * 1000)
SEED = 618


def run_demo(
    shop_path: Path | None = None, *, console: Console | None = None, file: IO[str] | None = None
) -> int:
    """Run the scripted scenario on a shop file and print its decisions; 0 when it ran."""
    out = console or Console(file=file, highlight=False)
    path = shop_path or DEFAULT_SHOP
    try:
        config = load_shop_file(path)
    except ConfigError as exc:
        out.print(Text(f"fenliu demo: cannot load the shop file:\n{exc}", style="red"))
        return 2
    demo = Demo(config, out)
    out.print(Text(f"Fenliu demo: shop {config.id!r} from {path}", style="bold"))
    out.print(
        f"{plural(len(config.agents), 'agent')}, {plural(len(config.groups), 'group')}; "
        f"the routing engine alone in virtual time from {START:%Y-%m-%d %H:%M} ({TZ}), "
        "without Kafka or Redis (`fenliu dev` runs the daemon with both).\n",
        soft_wrap=True,
    )
    header = f"{'time':<8} {'buyer':<8} {'asks for':<9} {'decision':<14} {'agent':<9} group/mode"
    out.print(Text(header, style="dim"), soft_wrap=True)
    demo.play()
    demo.summary()
    return 0


class Demo:
    """Drives one shop's engine through the scenario and prints what it decides."""

    def __init__(self, config: ShopConfig, console: Console) -> None:
        self.config = config
        self.console = console
        self.engine = Engine({config.id: config})
        self.rng = random.Random(SEED)
        self.now = T0
        self.ids = 0
        self.agent_of: dict[str, str] = {}  # buyer -> agent of its open session
        self.kind_of: dict[str, str] = {}  # buyer -> the group its context targets
        self.last_contact: dict[str, tuple[str, int]] = {}  # buyer -> (agent, ended at)
        self.agent_status: dict[str, AgentStatus] = {}
        self.assigned: Counter[str] = Counter()
        self.tally: Counter[str] = Counter()
        self.contexts = contexts_by_kind(config)

    # ------------------------------------------------------------------------ plumbing

    def at(self, minutes: float) -> None:
        """Move the clock to START + minutes, firing each timer at its own deadline."""
        target = T0 + round(minutes * 60_000)
        while (deadline := self.engine.next_deadline()) is not None and deadline <= target:
            self.show(self.engine.on_timer(deadline))
        self.now = max(self.now, target)

    def next_id(self, prefix: str) -> str:
        """A fresh event id."""
        self.ids += 1
        return f"{prefix}-{self.ids}"

    def send(self, event: InputEvent) -> None:
        """Feed one event now and print the decisions (or why it was refused)."""
        try:
            self.show(self.engine.handle(event, self.now))
        except EventRejected as rejected:
            self.show(rejected.outputs)
            self.tally["rejected"] += 1
            self.line(self.now, "", "", Text(f"rejected: {rejected.reason}", style="red"))

    def note(self, text: str) -> None:
        """A line of narration: what the script does next."""
        self.console.print(Text(f"{clock(self.now)} ▸ {text}", style="bold"), soft_wrap=True)

    def line(self, ts: int, buyer: str, kind: str, what: Text) -> None:
        """One decision line: time, buyer, the group its context targets, what happened."""
        row = Text.assemble(f"{clock(ts)} {buyer:<8} {kind:<9} ", what)
        self.console.print(row, soft_wrap=True)

    def show(self, outputs: list[OutputEvent]) -> None:
        """Print decisions and track sessions."""
        for out in outputs:
            if isinstance(out, Assignment):
                self.agent_of[out.buyer_id] = out.agent_id
                self.assigned[out.agent_id] += 1
                self.tally[f"assignment {out.reason.value}"] += 1
            elif isinstance(out, SessionClosed):
                self.agent_of.pop(out.buyer_id, None)
                self.last_contact[out.buyer_id] = (out.agent_id, out.ts)
                self.tally[f"closed {out.reason.value}"] += 1
            elif isinstance(out, QueueUpdate):
                self.tally[f"queue {out.status.value}"] += 1
            else:
                continue
            kind = self.kind_of.get(out.buyer_id, "")
            self.line(out.ts, out.buyer_id, kind, describe(out))

    # ---------------------------------------------------------------------- the events

    def status(self, status: AgentStatus, *agents: str) -> None:
        """Agents change reception state."""
        for agent in agents:
            self.agent_status[agent] = status
            self.send(
                AgentStatusChanged(self.next_id("st"), self.config.id, self.now, agent, status)
            )

    def stats(self, agent: str, rate: float) -> None:
        """An analytics product reports an agent's conversion rate."""
        self.send(AgentStatsReported(self.next_id("x"), self.config.id, self.now, agent, rate))

    def inquiry(self, buyer: str, kind: str | None = None, priority: int = 0) -> None:
        """A buyer clicks "contact us"; a known buyer keeps its context."""
        if kind is not None:
            self.kind_of[buyer] = kind
        contexts = self.contexts.get(self.kind_of[buyer], (InquiryContext(),))
        context = contexts[int(buyer.rsplit("-", 1)[-1]) % len(contexts)]
        event = BuyerInquired(
            self.next_id("inq"), self.config.id, self.now, buyer, context, priority
        )
        self.send(event)

    def chat(self, buyer: str, rounds: int | None = None, *, answered: bool = True) -> None:
        """The buyer and its agent exchange a few messages; unless `answered`, the buyer
        writes last, which keeps the session open until the agent replies."""
        shop = self.config.id
        for _ in range(rounds or self.rng.randint(1, 3)):
            agent = self.agent_of.get(buyer)
            if agent is None:
                return
            self.send(MessageSent(self.next_id("m"), shop, self.now, buyer, "buyer"))
            if answered:
                self.send(MessageSent(self.next_id("m"), shop, self.now, buyer, "agent", agent))

    def leave(self, buyer: str) -> None:
        """A queued buyer closes the window."""
        self.send(BuyerLeft(self.next_id("l"), self.config.id, self.now, buyer))

    def transfer(
        self, buyer: str, *, to_group: str | None = None, to_agent: str | None = None
    ) -> None:
        """The buyer's agent hands it over."""
        event = SessionTransferred(
            self.next_id("tr"), self.config.id, self.now, buyer, to_agent, to_group
        )
        self.send(event)

    # ------------------------------------------------------------------------ the script

    def play(self) -> None:
        """The whole evening."""
        burst = self.opening()
        self.agents_come_and_go(burst)
        self.rush()
        self.returns(burst)

    def opening(self) -> list[str]:
        """Everyone online, conversion figures in, then a burst of buyers who chat."""
        self.note(f"{len(self.config.agents)} agents come online")
        self.status(AgentStatus.ONLINE, *(a.id for a in self.config.agents))
        conversion = [g for g in self.config.groups if g.mode and g.mode.value == "conversion"]
        for group in conversion[:1]:
            rates = {a: round(self.rng.uniform(0.04, 0.35), 2) for a in group.agents}
            shown = ", ".join(f"{a} {r:.0%}" for a, r in list(rates.items())[:4])
            self.note(f"conversion rates for {group.name} arrive ({shown}, ...)")
            for agent, rate in rates.items():
                self.stats(agent, rate)
        kinds = list(self.contexts)
        self.note(f"a burst of buyers: {', '.join(kinds)}")
        burst = [f"b-{i:02d}" for i in range(1, 17)]
        for i, buyer in enumerate(burst):
            self.at(i * 4 / 60)
            self.inquiry(buyer, kinds[i % len(kinds)])
        self.at(1.2)
        for buyer in burst:
            self.chat(buyer)
        return burst

    def agents_come_and_go(self, burst: list[str]) -> None:
        """Active session, a suspension, an agent offline, repeat entry, a transfer."""
        self.at(2)
        self.note(f"{burst[1]} clicks 'contact us' again while in a session")
        self.inquiry(burst[1])
        busy = [self.agent_of[b] for b in burst if b in self.agent_of]
        if busy:
            self.at(2.5)
            self.note(f"{busy[0]} is suspended (挂起): keeps its chats, gets no new buyers")
            self.status(AgentStatus.SUSPENDED, busy[0])
            self.inquiry("b-17", self.kind_of[burst[0]])
        if len(busy) > 2:
            gone, victim = busy[2], next(b for b in burst if self.agent_of.get(b) == busy[2])
            self.at(3)
            self.note(f"{gone} goes offline: its chats close")
            self.status(AgentStatus.OFFLINE, gone)
            self.at(3.5)
            self.come_back(victim)
        self.transfer_one(burst)

    def transfer_one(self, burst: list[str]) -> None:
        """A buyer asks something another group handles, and is handed over."""
        self.at(4)
        for buyer in burst:
            others = [g for g in self.contexts if g not in (self.kind_of[buyer], UNMATCHED)]
            if buyer in self.agent_of and others:
                target = "aftersale" if "aftersale" in others else others[0]
                self.note(f"{buyer} asks about a return: its agent transfers it to {target}")
                self.transfer(buyer, to_group=target)
                return

    def rush(self) -> None:
        """Most of one group leaves for a briefing just as a rush of its buyers arrives."""
        group = rush_group(self.config)
        if group is None or group.name not in self.contexts:
            return
        keep = sorted(group.agents, key=self.cap)[:3]
        away = [a for a in group.agents if a not in keep]
        self.at(5)
        self.note(f"briefing: {len(away)} {group.name} agents suspended; {', '.join(keep)} stay")
        self.status(AgentStatus.SUSPENDED, *away)
        if (group.mode or self.config.mode).value == "conversion":
            self.note(
                f"with {len(keep)} eligible agents (conversion_min_agents = "
                f"{self.config.conversion_min_agents}) {group.name} routes by efficiency"
            )
        rush = [f"b-{i}" for i in range(30, 48)]
        for i, buyer in enumerate(rush):
            self.at(5 + i * 5 / 60)
            if buyer == rush[-1]:
                self.note(f"{buyer} has priority 1: it goes to the head of the line")
            self.inquiry(buyer, group.name, priority=1 if buyer == rush[-1] else 0)
            self.chat(buyer, 1, answered=i % 3 == 0)  # most wait for answers: slots stay taken
        self.at(7)
        queued = [b for b in rush if b not in self.agent_of]
        if queued:
            self.note(f"{queued[0]} gives up waiting")
            self.leave(queued[0])
        wait = self.config.queue.max_wait // 60_000
        self.note(f"time passes: idle chats time out; after {wait} min in line, buyers overflow")
        self.at(24)
        self.note(f"the briefing ends: {group.name} agents back online")
        self.status(AgentStatus.ONLINE, *away)
        for buyer in rush:
            if buyer in self.agent_of:
                self.chat(buyer, 1)

    def returns(self, burst: list[str]) -> None:
        """Buyers come back: within the repeat-entry window, then an hour later (sticky)."""
        self.at(30)
        self.come_back(next((b for b in burst if b in self.last_contact), None))
        self.at(90)
        for buyer in burst[-4:]:
            self.come_back(buyer)
        self.at(91)

    def come_back(self, buyer: str | None) -> None:
        """A buyer whose chat ended writes again."""
        if buyer is None or buyer in self.agent_of or buyer not in self.last_contact:
            return
        agent, ended_at = self.last_contact[buyer]
        status = self.agent_status.get(agent, AgentStatus.OFFLINE)
        self.note(
            f"{buyer} comes back {span(self.now - ended_at)} after its chat with "
            f"{agent} ({status.value}) ended"
        )
        self.inquiry(buyer)
        self.chat(buyer)

    def cap(self, agent_id: str) -> int:
        """An agent's own cap, else the shop default (to pick who stays at the briefing)."""
        agent = self.config.agent(agent_id)
        return (agent.cap if agent and agent.cap else None) or self.config.queue.default_cap

    # ----------------------------------------------------------------------- the summary

    def summary(self) -> None:
        """Per agent: assignments, load, status; per group: mode, online, queued."""
        shop = self.engine.shop(self.config.id)
        print_summary(self.console, self.config, shop, self.assigned, self.tally)


# --------------------------------------------------------------------------- helpers


def rush_group(config: ShopConfig) -> GroupConfig | None:
    """The group the rush goes to: the first that overflows, else the largest."""
    overflowing = [g for g in config.groups if g.overflow_to]
    if overflowing:
        return overflowing[0]
    return max(config.groups, key=lambda g: len(g.agents), default=None)
