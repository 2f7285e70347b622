"""Simulated buyers and agents for `fenliu dev`: what a shop's chat front end would publish.

Sans-I/O, like the routing core: `Traffic` is told the time, answers with the input events
that are due (`due`), and learns what the daemon decided (`observe`); `daemon.dev.command` owns the
Kafka producer and consumer. Every random choice comes from the seed: arrivals from one
generator, each buyer's and each agent's behaviour from a generator of its own (seed + id),
so a buyer behaves the same whatever the daemon's timing. Nothing is scheduled after the
end of the run, so the traffic stops by itself.

What happens, in wall-clock seconds:

- agents come online over the first few seconds (conversion figures arrive for agents of
  conversion groups); now and then one is suspended (挂起) or goes offline for a few seconds
  and comes back;
- buyers arrive as a Poisson process, with contexts drawn from the shop's groups (the vip
  crowd, presale items and intents, aftersale order statuses, unmatched);
- once assigned, a buyer and its agent chat a few rounds with think times; some buyers
  order afterwards, a few are transferred to another group, a few click "contact us" again
  in the middle of a chat (an active session);
- a buyer still waiting when its patience runs out leaves; a buyer whose agent went offline
  often writes again (a repeat entry).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from daemon.core.config import ShopConfig
from daemon.dev.kinds import UNMATCHED, contexts_by_kind
from topics.codec import TopicKind
from topics.events import (
    AgentStatsReported,
    AgentStatus,
    AgentStatusChanged,
    Assignment,
    BuyerInquired,
    BuyerLeft,
    CloseReason,
    InputEvent,
    InquiryContext,
    MessageSent,
    OrderPlaced,
    OutputEvent,
    QueueStatus,
    QueueUpdate,
    SessionClosed,
    SessionTransferred,
)

MIX = {"vip": 1.0, "presale": 4.0, "aftersale": 3.0, UNMATCHED: 2.0}
"""Relative arrival weights of the kinds of buyer; a group not named here weighs 2."""

Span = tuple[float, float]  # seconds, drawn uniformly
DEFAULT_RATE = 2.0
DEFAULT_SEED = 618


@dataclass(frozen=True, slots=True)
class TrafficSettings:
    """How busy the shop is and how people behave (times in seconds)."""

    rate: float = DEFAULT_RATE  # buyers arriving per second (Poisson)
    seed: int = DEFAULT_SEED
    duration_s: float | None = None  # None: until stopped
    ramp_s: float = 4.0  # every agent is online within this
    patience_s: Span = (15.0, 60.0)  # how long a buyer waits before leaving
    buyer_think_s: Span = (1.0, 5.0)
    agent_think_s: Span = (1.5, 6.0)
    rounds: tuple[int, int] = (2, 5)  # messages a buyer writes in a chat
    break_every_s: float = 60.0  # mean time between an agent's breaks
    break_s: Span = (4.0, 12.0)
    offline_share: float = 0.3  # of breaks; the rest are suspensions
    order_chance: float = 0.25
    transfer_chance: float = 0.03  # per agent reply, at most once per buyer
    reclick_chance: float = 0.04  # per buyer message, at most once per buyer
    return_chance: float = 0.5  # writes again after its agent went offline


@dataclass(slots=True)
class Buyer:
    """One simulated buyer, as far as the simulator knows."""

    id: str
    kind: str
    context: InquiryContext
    rng: random.Random
    rounds_left: int
    visit: int = 0
    waiting: bool = False  # inquired, not yet assigned (routed or queued)
    agent: str | None = None
    group: str | None = None
    chatting: bool = False
    transferred: bool = False
    reclicked: bool = False


@dataclass(order=True, slots=True)
class _Action:
    at: int
    seq: int
    run: Callable[[], None] = field(compare=False)


class Traffic:
    """The simulated shop floor. See the module docstring."""

    def __init__(self, shop: ShopConfig, settings: TrafficSettings, start_ms: int) -> None:
        self.shop = shop
        self.settings = settings
        self.end_ms = (
            None if settings.duration_s is None else start_ms + round(settings.duration_s * 1000)
        )
        self.contexts = contexts_by_kind(shop)
        self.kinds = list(self.contexts)
        self.weights = [MIX.get(kind, 2.0) for kind in self.kinds]
        self.agent_status = {agent.id: AgentStatus.OFFLINE for agent in shop.agents}
        self.buyers: dict[str, Buyer] = {}
        self.stats: Counter[str] = Counter()
        self._arrivals = random.Random(f"{settings.seed}:arrivals")
        self._agent_rng = {a.id: random.Random(f"{settings.seed}:{a.id}") for a in shop.agents}
        self._conversion = {
            agent
            for group in shop.groups
            if (group.mode or shop.mode).value == "conversion"
            for agent in group.agents
        }
        self._plan: list[_Action] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._out: list[InputEvent] = []
        self._now = start_ms
        for agent in shop.agents:
            rng = self._agent_rng[agent.id]
            self._at(start_ms + _ms(rng.uniform(0, settings.ramp_s)), self._online, agent.id)
        if settings.rate > 0:
            self._at(start_ms, self._arrive)

    # ------------------------------------------------------------------------- the clock

    def next_due(self) -> int | None:
        """When the next event is due (epoch ms), or None when nothing is left to do."""
        return self._plan[0].at if self._plan else None

    def due(self, now_ms: int) -> list[InputEvent]:
        """The input events due at `now_ms` (each stamped with the time it was due)."""
        while self._plan and self._plan[0].at <= now_ms:
            action = heapq.heappop(self._plan)
            self._now = action.at
            action.run()
        out, self._out = self._out, []
        return out

    def observe(self, event: OutputEvent, now_ms: int) -> None:
        """Learn what the daemon decided (read from the output topics)."""
        self._now = now_ms
        if isinstance(event, Assignment):
            self._assigned(event)
        elif isinstance(event, SessionClosed):
            self._closed(event)
        elif isinstance(event, QueueUpdate):
            buyer = self.buyers.get(event.buyer_id)
            if buyer is not None and event.status in (QueueStatus.LEFT, QueueStatus.EXPIRED):
                buyer.waiting = False

    # ------------------------------------------------------------------------- plumbing

    def _at(self, at: int, action: Callable[..., None], *args: object) -> None:
        if self.end_ms is None or at <= self.end_ms:
            heapq.heappush(self._plan, _Action(at, next(self._seq), partial(action, *args)))

    def _after(
        self, span: Span, rng: random.Random, action: Callable[..., None], *args: object
    ) -> None:
        self._at(self._now + _ms(rng.uniform(*span)), action, *args)

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def _emit(self, event: InputEvent) -> None:
        self.stats[type(event).__name__] += 1
        self._out.append(event)

    def _status(self, agent: str, status: AgentStatus) -> None:
        self.agent_status[agent] = status
        self._emit(AgentStatusChanged(self._id("st"), self.shop.id, self._now, agent, status))

    # --------------------------------------------------------------------------- agents

    def _online(self, agent: str) -> None:
        self._status(agent, AgentStatus.ONLINE)
        rng = self._agent_rng[agent]
        if agent in self._conversion:
            self._conversion.discard(agent)  # one figure per agent
            rate = round(rng.uniform(0.05, 0.35), 3)
            self._emit(AgentStatsReported(self._id("x"), self.shop.id, self._now, agent, rate))
        self._at(
            self._now + _ms(rng.expovariate(1 / self.settings.break_every_s)), self._break, agent
        )

    def _break(self, agent: str) -> None:
        rng = self._agent_rng[agent]
        away = sum(s is not AgentStatus.ONLINE for s in self.agent_status.values())
        if away >= max(1, len(self.agent_status) // 6):  # keep the floor staffed
            self._after((5.0, 15.0), rng, self._break, agent)
            return
        offline = rng.random() < self.settings.offline_share
        self._status(agent, AgentStatus.OFFLINE if offline else AgentStatus.SUSPENDED)
        self._after(self.settings.break_s, rng, self._online, agent)

    # --------------------------------------------------------------------------- buyers

    def _arrive(self) -> None:
        self.stats["buyers"] += 1
        n = self.stats["buyers"]
        buyer_id = f"buyer-{n:04d}"
        kind = self._arrivals.choices(self.kinds, self.weights)[0]
        rng = random.Random(f"{self.settings.seed}:{buyer_id}")
        buyer = Buyer(
            buyer_id, kind, rng.choice(self.contexts[kind]), rng, rng.randint(*self.settings.rounds)
        )
        self.buyers[buyer_id] = buyer
        self._inquire(buyer)
        gap = self._arrivals.expovariate(self.settings.rate)
        self._at(self._now + _ms(gap), self._arrive)

    def _inquire(self, buyer: Buyer) -> None:
        buyer.visit += 1
        buyer.waiting = True
        self._emit(BuyerInquired(self._id("inq"), self.shop.id, self._now, buyer.id, buyer.context))
        self._after(self.settings.patience_s, buyer.rng, self._give_up, buyer, buyer.visit)

    def _give_up(self, buyer: Buyer, visit: int) -> None:
        if buyer.visit == visit and buyer.waiting:
            buyer.waiting = False
            self._emit(BuyerLeft(self._id("l"), self.shop.id, self._now, buyer.id))

    def _assigned(self, event: Assignment) -> None:
        buyer = self.buyers.get(event.buyer_id)
        if buyer is None:
            return
        buyer.waiting = False
        buyer.agent, buyer.group = event.agent_id, event.group
        if not buyer.chatting and buyer.rounds_left > 0:
            buyer.chatting = True
            self._after(self.settings.buyer_think_s, buyer.rng, self._buyer_writes, buyer)

    def _closed(self, event: SessionClosed) -> None:
        buyer = self.buyers.get(event.buyer_id)
        if buyer is None or buyer.agent != event.agent_id:
            return  # a transfer's close may arrive after the new assignment
        buyer.agent, buyer.chatting = None, False
        rng = buyer.rng
        if event.reason is CloseReason.AGENT_OFFLINE and rng.random() < self.settings.return_chance:
            buyer.rounds_left = max(buyer.rounds_left, 1)  # "hello? are you still there?"
            self._after((2.0, 8.0), rng, self._inquire, buyer)

    # ----------------------------------------------------------------------------- chat

    def _buyer_writes(self, buyer: Buyer) -> None:
        if buyer.agent is None or not buyer.chatting:
            return
        shop = self.shop.id
        if not buyer.reclicked and buyer.rng.random() < self.settings.reclick_chance:
            buyer.reclicked = True  # "contact us" again, mid-chat: an active session
            self._emit(BuyerInquired(self._id("inq"), shop, self._now, buyer.id, buyer.context))
        self._emit(MessageSent(self._id("m"), shop, self._now, buyer.id, "buyer"))
        self._after(self.settings.agent_think_s, buyer.rng, self._agent_replies, buyer)

    def _agent_replies(self, buyer: Buyer) -> None:
        agent = buyer.agent
        if agent is None or self.agent_status[agent] is AgentStatus.OFFLINE:
            return  # the session is closing
        shop, rng = self.shop.id, buyer.rng
        target = self._transfer_target(buyer)
        if target is not None and rng.random() < self.settings.transfer_chance:
            buyer.transferred, buyer.chatting = True, False  # the next assignment resumes it
            self._emit(SessionTransferred(self._id("tr"), shop, self._now, buyer.id, None, target))
            return
        self._emit(MessageSent(self._id("m"), shop, self._now, buyer.id, "agent", agent))
        buyer.rounds_left -= 1
        if buyer.rounds_left > 0:
            self._after(self.settings.buyer_think_s, rng, self._buyer_writes, buyer)
            return
        buyer.chatting = False  # the chat is over; the daemon closes it by timeout
        if rng.random() < self.settings.order_chance:
            self._after((2.0, 10.0), rng, self._order, buyer)

    def _transfer_target(self, buyer: Buyer) -> str | None:
        """The largest other group (a presale question that is really a return, ...)."""
        if buyer.transferred:
            return None
        others = [g for g in self.shop.groups if g.name != buyer.group]
        return max(others, key=lambda g: len(g.agents)).name if others else None

    def _order(self, buyer: Buyer) -> None:
        amount = round(buyer.rng.uniform(59, 899), 2)
        self._emit(OrderPlaced(self._id("o"), self.shop.id, self._now, buyer.id, amount))


def topic_kind(event: InputEvent) -> TopicKind:
    """The input topic an event is published on (contract §1)."""
    if isinstance(event, MessageSent):
        return TopicKind.MESSAGES
    if isinstance(event, AgentStatusChanged | AgentStatsReported):
        return TopicKind.AGENT_STATUS
    return TopicKind.INQUIRIES


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
