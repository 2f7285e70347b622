"""The discrete-event loop: simulated buyers and agents around the routing core.

    run = simulate(shop, "steady", seed=1, policy=parse_policy("conversion:high"))
    run.trace     # what happened (daemon.lab.trace), for the measures and the report
    run.engine    # the engine at the end, for `fenliu explain`

No Kafka and no clock: a heap of (virtual time, sequence, action) drives one
`daemon.core.engine.Engine` through the calls the daemon makes (`handle`, `next_deadline`,
`on_timer`). Before each action, every engine timer due by then fires at its own deadline,
so session timeouts, queue updates and max-wait expiries happen when the engine says. The
runner reacts to the engine's outputs as a chat front end would: an assignment starts the
chat, a queued buyer's patience starts running, a closed session may lead to an order and a
return. Buyers and agents come from `daemon.lab.world` with common random numbers, so
policies are compared on the same buyers; the same seed gives the same trace.

Replies: the trace records how long the buyer waited for each reply (from its message to
the agent's next one, contract §3.6). With `ignored_first` > 0 that share of sessions has
its first message never answered (`daemon.lab.world`); a buyer who waits past its patience
for a reply leaves (writes no more, orders nothing). A new assignment of a buyer who is in
a session, to another agent, is a move (`unanswered` when the core reassigns a buyer nobody
answered, or a transfer), whichever of it and the old session's close comes first: the
chat goes on with the new agent, who answers an owed message at its own pace, with a draw
of its own (`daemon.lab.world.moved_reply_factor`). A reply the old agent was about to send
belongs to the old session and is never sent.

By default the shop knows its agents' conversion from 30 days of history, sent as
`agent_stats` at the start and every midnight (`daemon.lab.history`; `history="none"`:
nothing).

A shop with an `[experiment]` (or `experiment=`) runs a grey test in the core; the runner
tells `daemon.lab.grey.GreyWatch` each counted session's true chance of an order and reads
the report every simulated hour, and for a lab-only `one-slow-agent` arm hands the arm's new
sessions over by `transfer`. Without an experiment nothing of this runs.

`days` plays a one-day scenario that many days in a row on the same engine
(`daemon.lab.scenarios.consecutive`), and `make_engine` builds the engine the runner drives
(bench/week.py passes a tracking engine that checkpoints to Redis as the daemon does).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from daemon.core.config import ShopConfig
from daemon.core.engine import Engine, EventRejected
from daemon.core.sessions import OPENING
from daemon.core.shop import ShopEngine
from daemon.lab.grey import GreyWatch, LabExperiment, slowest_online
from daemon.lab.history import (
    HISTORIES,
    stats_figures,
    stats_sessions,
    stats_times,
    status_history,
)
from daemon.lab.policy import AS_CONFIGURED, ModeChoice, Policy, parse_policy
from daemon.lab.scenarios import (
    HOUR_MS,
    MINUTE_MS,
    Scenario,
    consecutive,
    daily_volume,
    find_scenario,
)
from daemon.lab.trace import AgentRecord, InquiryRecord, QueueSample, Trace
from daemon.lab.world import (
    EXPECTED_CHAT_S,
    Agent,
    Buyer,
    Kind,
    Visit,
    buyer_kinds,
    effective_caps,
    ignores_first,
    moved_reply_factor,
    new_agents,
    new_buyer,
    order_chance,
    reply_excess_ms,
    reply_patience_ms,
)
from topics.events import (
    AgentStatsReported,
    AgentStatus,
    AgentStatusChanged,
    Assignment,
    AssignReason,
    BuyerInquired,
    BuyerLeft,
    CloseReason,
    InputEvent,
    MessageSent,
    OrderPlaced,
    OutputEvent,
    QueueStatus,
    QueueUpdate,
    SessionClosed,
    SessionTransferred,
)

__all__ = ["AS_CONFIGURED", "ModeChoice", "Policy", "SimRun", "parse_policy", "simulate"]

SAMPLE_EVERY_MS = 5 * MINUTE_MS
DEFAULT_DEADLINE_MS = 180_000
MOVES = ("transferred", "unanswered")  # session_closed reasons of a buyer who moves on
PROGRESS_EVERY = 4096  # actions between progress reports

EngineFactory = Callable[[Mapping[str, ShopConfig]], Engine]


def deadline_ms(config: ShopConfig) -> int:
    """The shop's `[replies] deadline` (contract §3.6), in ms. The routing core brings the
    table (issue 26, item 1); until a shop config has it, the contract's default, 3m."""
    replies = getattr(config, "replies", None)
    return int(getattr(replies, "deadline", DEFAULT_DEADLINE_MS))


@dataclass(slots=True)
class SimRun:
    """One simulated run: its trace, the engine as it ended and the shop it routed."""

    trace: Trace
    engine: Engine
    config: ShopConfig  # the shop with the policy's modes
    grey: GreyWatch | None = None  # the grey test the shop ran, if any (daemon.lab.grey)


@dataclass(slots=True)
class Chat:
    """A served inquiry: the buyer's visit with its agent, while the session is open."""

    buyer: Buyer
    visit: Visit
    record: InquiryRecord
    agent: Agent | None = None
    round: int = 0  # agent replies so far
    sent: int = 0  # messages sent (message ids)
    open: bool = False
    attempt: int = 0  # inquiries again after a chat cut short (r1, r2, ... in the id)
    session_id: str = ""  # the inquiry id of its session (a move opens another)
    owed_since: int | None = None  # the buyer's message the agent has not answered yet
    excess_ms: int = 0  # waited past the grace so far (daemon.lab.world.reply_survival)
    patience_ms: float | None = None  # drawn when first needed (reply_patience_ms)


def simulate(
    shop: ShopConfig,
    scenario: str,
    *,
    seed: int,
    policy: Policy,
    progress: Callable[[float], None] | None = None,
    scale: float = 1.0,
    days: int = 1,
    make_engine: EngineFactory = Engine,
    history: str = "30d",
    leavers: frozenset[str] | None = None,
    ignored_first: float = 0.0,
    experiment: LabExperiment | None = None,
) -> SimRun:
    """Simulate `scenario` for `shop` under `policy` (see the module docstring).

    `scale` multiplies the number of buyers (tests use a fraction of a day's traffic);
    `days` > 1 plays a one-day scenario that many days in a row; `make_engine` builds the
    engine from the shops (`Engine` by default; the oracle policy builds its own, see
    `daemon.lab.policy`). `history` is what the shop knows before the run
    (`daemon.lab.history`): "30d" (the default) first feeds the engine the shop's past as
    its Redis would hold it (the agent-status events of the four weeks before, ordinary
    days even before a Double 11; no buyers) and sends the agents' conversion over 30 days
    as `agent_stats` at the start and every midnight; "none" starts from nothing.
    `leavers` gives the engine hindsight for a gauge of the wait estimate (bench/sim.py,
    section 3): the inquiry ids that will leave their line unserved (from a first run of
    the same seed: the world does not read estimates, so the run is otherwise the same),
    which the estimates then count exactly (`Queues.leavers`). `ignored_first` is the
    share of sessions whose first message the agent never answers (`daemon.lab.world`).
    `experiment` runs a grey test in the shop (`daemon.lab.grey`; a shop file's own
    `[experiment]` runs without it); `SimRun.grey` then holds what the lab saw of it.
    Raises ValueError for an unknown scenario or history, a policy naming an unknown group,
    `days` > 1 of a scenario that is not one day long, the oracle with a `make_engine` of
    its own, or `ignored_first` outside [0, 1].
    """
    if not scale >= 0:
        raise ValueError(f"scale must be 0 or more, not {scale!r}")
    if not 0 <= ignored_first <= 1:
        raise ValueError(f"ignored_first is a share from 0 to 1, not {ignored_first!r}")
    if history not in HISTORIES:
        raise ValueError(f"unknown history {history!r}: use one of {', '.join(HISTORIES)}")
    plan = find_scenario(scenario)
    if days != 1:
        plan = consecutive(plan, days)
    config = policy.apply(shop)
    if experiment is not None:
        config = experiment.apply(config)
    elif config.experiment is not None:
        experiment = LabExperiment.of(config.experiment)
    if policy.oracle:
        if make_engine is not Engine:
            raise ValueError("the oracle policy runs only on the plain Engine")
        rates = {a.id: a.true_conversion for a in new_agents(config, plan, seed)}
        make_engine = partial(Engine, oracle={config.id: rates})
    runner = _Runner(config, plan, seed, policy.name, scale, progress, make_engine, ignored_first)
    if experiment is not None:
        runner.watch(experiment)
    if history == "30d":
        runner.past(status_history(config, plan, seed))
        runner.stats_history()
    if leavers is not None:
        runner.engine.shop(config.id).queues.leavers = leavers
    runner.run()
    return SimRun(runner.trace, runner.engine, config, runner.grey)


class _Runner:
    """One run: the heap of actions, the engine, and what the trace records."""

    def __init__(
        self,
        config: ShopConfig,
        scenario: Scenario,
        seed: int,
        policy: str,
        scale: float,
        progress: Callable[[float], None] | None,
        make_engine: EngineFactory = Engine,
        ignored_first: float = 0.0,
    ) -> None:
        self.config = config
        self.shop_id = config.id
        self.scenario = scenario
        self.seed = seed
        self.progress = progress
        self.engine = make_engine({config.id: config})
        self.start, self.end = scenario.start, scenario.end
        self.now = self.start
        caps = effective_caps(config)
        self.kinds: list[Kind] = buyer_kinds(config, caps)
        self.caps = caps
        self.session_s = session_s = EXPECTED_CHAT_S + config.queue.session_timeout / 1000
        per_day = daily_volume(config, caps, session_s) * scale
        self.arrivals = scenario.arrivals(random.Random(f"{seed}:arrivals"), per_day)
        self.agents = {a.id: a for a in new_agents(config, scenario, seed)}
        self.ignored_first = ignored_first
        self.trace = Trace(
            policy, scenario.name, seed, self.start, self.end, caps, deadline_ms(config),
            ignored_first,
        )  # fmt: skip
        for agent in self.agents.values():
            online = agent.online(self.start, self.end)
            self.trace.agents[agent.id] = AgentRecord(
                agent.id, list(agent.groups), agent.true_conversion, online
            )
        self.chats: dict[str, Chat] = {}  # inquiry id (of its session) -> its chat
        self.sessions: dict[str, Chat] = {}  # buyer id -> its chat while in session
        self.queued: dict[str, None] = {}  # inquiry ids waiting in a queue
        self.heap: list[tuple[int, int, Callable[[Any], None], Any]] = []
        self.seq = itertools.count()
        self.status_ids = itertools.count()
        self.grey: GreyWatch | None = None

    def watch(self, experiment: LabExperiment) -> None:
        """Follow the grey test the shop runs (daemon.lab.grey)."""

        def shop() -> ShopEngine:
            return self.engine.shop(self.shop_id)  # a restore replaces it

        paces = {a.id: a.reply_median_ms for a in self.agents.values() if a.groups}

        self.grey = GreyWatch(
            experiment,
            lambda: shop().state.experiments.running,
            lambda: slowest_online(paces, shop().state.agents),
        )

    # ------------------------------------------------------------------------ the loop

    def past(self, changes: list[tuple[int, str, AgentStatus]]) -> None:
        """Feed the shop's past agent-status changes (daemon.lab.history) before the run;
        they end with every agent offline, as the run starts. The past has no buyers, so
        its online hours are taken out again (through a snapshot): `fenliu explain` then
        sets the run's assignments against the run's online time, as the measures do."""
        engine, shop_id = self.engine, self.shop_id
        for n, (when, agent_id, status) in enumerate(changes):
            event = AgentStatusChanged(f"hst:{agent_id}:{n}", shop_id, when, agent_id, status)
            engine.handle(event, when)
        data = engine.snapshot_shop(shop_id)
        for row in data["agents"].values():
            row["online_ms"] = 0
        engine.restore_shop(shop_id, data)

    def at(self, when: int, action: Callable[[Any], None], arg: Any = None) -> None:
        """Schedule `action(arg)` at virtual time `when` (dropped after the end)."""
        if when <= self.end:
            heapq.heappush(self.heap, (when, next(self.seq), action, arg))

    def run(self) -> None:
        """Play the scenario to its end."""
        for agent in self.agents.values():
            for when, status in agent.changes:
                self.at(when, self.status, (agent.id, status))
        if self.arrivals:
            self.at(self.arrivals[0], self.arrive, 0)
        self.at(self.start, self.sample)
        heap, engine, end = self.heap, self.engine, self.end
        steps = 0
        while True:
            deadline = engine.next_deadline()
            if deadline is not None and (not heap or deadline <= heap[0][0]):
                if deadline > end:
                    break
                self.now = deadline
                self.react(engine.on_timer(deadline))
                continue
            if not heap:
                break
            when, _, action, arg = heapq.heappop(heap)
            self.now = when
            action(arg)
            steps += 1
            if self.progress is not None and steps % PROGRESS_EVERY == 0:
                self.progress((when - self.start) / (end - self.start))
        for chat in self.sessions.values():  # still in session at the end
            self.owed(chat, end)
        if self.grey is not None:
            self.grey.look(end)
            for chat in self.sessions.values():
                self.grey.still_open(chat.record.inquiry_id, self.chance(chat))
        if self.progress is not None:
            self.progress(1.0)

    def send(self, event: InputEvent) -> str | None:
        """Feed one event to the engine and react; the rejection reason, if any."""
        try:
            out = self.engine.handle(event, self.now)
        except EventRejected as rejected:
            self.react(rejected.outputs)
            return rejected.reason
        self.react(out)
        return None

    def react(self, outputs: list[OutputEvent]) -> None:
        """What the front end does with the engine's decisions."""
        for out in outputs:
            if isinstance(out, QueueUpdate):
                self.queue_update(out)
            elif isinstance(out, Assignment):
                self.assigned(out)
            elif isinstance(out, SessionClosed):
                self.closed(out)

    def sample(self, _: object) -> None:
        """Record the queue length; come back in five minutes."""
        self.trace.queue.append(QueueSample(self.now, len(self.queued)))
        self.at(self.now + SAMPLE_EVERY_MS, self.sample)
        if self.grey is not None and (self.now - self.start) % HOUR_MS == 0 and self.now < self.end:
            self.grey.look(self.now)

    # -------------------------------------------------------------------------- agents

    def status(self, change: tuple[str, AgentStatus]) -> None:
        """An agent goes online, suspends or goes offline, as its shifts say."""
        agent_id, status = change
        event_id = f"st:{agent_id}:{next(self.status_ids)}"
        self.send(AgentStatusChanged(event_id, self.shop_id, self.now, agent_id, status))

    def stats_history(self) -> None:
        """Schedule the analytics figures of `daemon.lab.history` (start, each midnight)."""
        sessions = stats_sessions(self.config, self.caps, self.session_s)
        rates = {a.id: a.true_conversion for a in self.agents.values()}
        for day, when in enumerate(stats_times(self.scenario)):
            figures = stats_figures(self.config, rates, sessions, self.seed, day)
            self.at(when, self.stats, (day, figures))

    def stats(self, batch: tuple[int, dict[str, float]]) -> None:
        """The shop's analytics report every agent's conversion (`agent_stats`)."""
        day, figures = batch
        for agent_id, rate in figures.items():
            event_id = f"hist:{day}:{agent_id}"
            self.send(AgentStatsReported(event_id, self.shop_id, self.now, agent_id, rate))

    # -------------------------------------------------------------------------- buyers

    def arrive(self, k: int) -> None:
        """Buyer k's first inquiry; schedule the next arrival."""
        buyer = new_buyer(self.seed, k, self.kinds)
        self.inquire(buyer, buyer.next_visit(), f"{buyer.id}.0")
        if k + 1 < len(self.arrivals):
            self.at(self.arrivals[k + 1], self.arrive, k + 1)

    def inquire(self, buyer: Buyer, visit: Visit, inquiry_id: str) -> None:
        """The buyer clicks "contact us"."""
        record = InquiryRecord(
            inquiry_id, buyer.id, self.now, buyer.kind.group, intent=round(buyer.intent, 4)
        )
        self.trace.inquiries.append(record)
        self.chats[inquiry_id] = Chat(buyer, visit, record)
        event = BuyerInquired(inquiry_id, self.shop_id, self.now, buyer.id, buyer.context)
        reason = self.send(event)
        if reason is not None:
            record.rejected = reason
            del self.chats[inquiry_id]

    def come_back(self, buyer: Buyer) -> None:
        """A returning buyer: a new visit."""
        visit = buyer.next_visit()
        self.inquire(buyer, visit, f"{buyer.id}.{visit.number}")

    def write_again(self, chat: Chat) -> None:
        """A buyer whose chat was cut short writes again (a new inquiry, same visit)."""
        attempt = chat.attempt + 1
        inquiry_id = f"{chat.buyer.id}.{chat.visit.number}r{attempt}"
        self.inquire(chat.buyer, chat.visit, inquiry_id)
        new = self.chats.get(inquiry_id)
        if new is not None:  # the rest of the conversation
            new.round, new.attempt = chat.round, attempt

    def give_up(self, chat: Chat) -> None:
        """Patience ran out: leave the queue if still in it."""
        record = chat.record
        if record.inquiry_id in self.queued:
            event_id = f"lv:{record.inquiry_id}"
            self.send(BuyerLeft(event_id, self.shop_id, self.now, record.buyer_id))

    def order(self, chat: Chat) -> None:
        """The buyer places the order the session earned."""
        record = chat.record
        event = OrderPlaced(
            f"o:{record.inquiry_id}", self.shop_id, self.now, record.buyer_id, chat.visit.amount
        )
        self.send(event)
        record.ordered = True
        record.order_amount = chat.visit.amount

    # ---------------------------------------------------------------------------- chat

    def buyer_writes(self, chat: Chat) -> None:
        """The buyer's message of this round; the agent will answer (unless it ignores the
        session's first message)."""
        agent = chat.agent
        if not chat.open or agent is None:
            return
        first = chat.sent == 0
        chat.sent += 1
        record = chat.record
        event_id = f"m:{record.inquiry_id}:{chat.sent}"
        self.send(MessageSent(event_id, self.shop_id, self.now, record.buyer_id, "buyer"))
        if chat.open:
            chat.owed_since = self.now
            if first and ignores_first(self.seed, record.inquiry_id, self.ignored_first):
                record.ignored = True
            else:
                self.answer(chat, agent)

    def answer(self, chat: Chat, agent: Agent, factor: float | None = None) -> None:
        """`agent` will answer the buyer's message at its pace, in the session open now:
        the visit's draw for the round, or `factor` (a moved buyer's question)."""
        if factor is None:
            factor = chat.visit.reply_factor[chat.round]
        reply = agent.reply_ms(factor)
        self.at(self.now + reply, self.agent_replies, (chat, agent, chat.session_id))

    def agent_replies(self, turn: tuple[Chat, Agent, str]) -> None:
        """The agent answers; the buyer writes again after a think time, or is done (or
        left while waiting). A reply meant for a session that has since closed or moved
        is never sent, even if the chat came back to that agent by another session."""
        chat, agent, session_id = turn
        if not chat.open or chat.agent is not agent or chat.session_id != session_id:
            return
        chat.sent += 1
        record = chat.record
        event_id = f"m:{record.inquiry_id}:{chat.sent}"
        self.send(MessageSent(event_id, self.shop_id, self.now, record.buyer_id, "agent", agent.id))
        if chat.owed_since is not None:
            wait = self.now - chat.owed_since
            record.replies_ms.append(wait)
            self.waited(chat, wait)
            chat.owed_since = None
        chat.round += 1
        if chat.open and record.gave_up_at is None and chat.round < chat.visit.rounds:
            self.at(self.now + chat.visit.think_ms[chat.round], self.buyer_writes, chat)

    def waited(self, chat: Chat, wait: int) -> None:
        """The buyer waited `wait` ms for a reply: past its patience it has left."""
        assert chat.owed_since is not None
        record = chat.record
        excess = reply_excess_ms([wait])
        if excess == 0 or record.gave_up_at is not None:
            return
        if chat.patience_ms is None:
            chat.patience_ms = reply_patience_ms(self.seed, record.inquiry_id)
        left = chat.patience_ms - chat.excess_ms
        if excess > left:
            record.gave_up_at = chat.owed_since + (wait - excess) + math.ceil(left)
        chat.excess_ms += excess

    def owed(self, chat: Chat, until: int) -> None:
        """The session ends (or the run does) with the buyer's message unanswered."""
        if chat.owed_since is not None:
            wait = until - chat.owed_since
            chat.record.unanswered_ms = wait
            self.waited(chat, wait)
            chat.owed_since = None

    # ------------------------------------------------------------------ engine outputs

    def queue_update(self, out: QueueUpdate) -> None:
        """Record entering the queue (and start the buyer's patience) and leaving it."""
        inquiry_id, status = out.inquiry_id, out.status
        if status is QueueStatus.WAITING:
            return
        chat = self.chats.get(inquiry_id)
        if chat is None:
            return
        record = chat.record
        if status is QueueStatus.QUEUED:
            self.queued[inquiry_id] = None
            if record.queued_at is None:
                record.queued_at = out.ts
                record.queue_group = out.group
                record.queue_position = out.position
                record.estimate_s = out.estimated_wait_s
                self.at(out.ts + chat.visit.patience_ms, self.give_up, chat)
            return
        self.queued.pop(inquiry_id, None)
        if status is QueueStatus.LEFT:
            record.left_at = out.ts
            del self.chats[inquiry_id]
        elif status is QueueStatus.EXPIRED:
            record.expired_at = out.ts
            del self.chats[inquiry_id]

    def assigned(self, out: Assignment) -> None:
        """A session starts: record it and start the chat (or the chat moves)."""
        if out.reason is AssignReason.ACTIVE_SESSION:
            return
        moving = self.sessions.get(out.buyer_id)
        if moving is not None and (moving.agent is None or moving.agent.id != out.agent_id):
            self.moved(moving, out)
            return
        chat = self.chats.get(out.inquiry_id)
        if chat is None:
            return
        record = chat.record
        record.served_at = out.ts
        record.agent_id = out.agent_id
        record.reason = out.reason.value
        record.mode = out.mode.value if out.mode is not None else None
        record.served_group = out.group
        agent = self.agents[out.agent_id]
        agent.load += 1
        chat.agent, chat.open, chat.session_id = agent, True, out.inquiry_id
        self.sessions[out.buyer_id] = chat
        self.at(out.ts + chat.visit.think_ms[chat.round], self.buyer_writes, chat)
        grey = self.grey
        if grey is not None and out.reason in OPENING:
            grey.opened(record.inquiry_id, out.buyer_id)
            if grey.hands_over(out.buyer_id):
                self.at(out.ts, self.hand_over, chat)

    def hand_over(self, chat: Chat) -> None:
        """A `one-slow-agent` arm (daemon.lab.grey): the front end hands the buyer's new
        session to the one slow agent, unless the core stopped the arm meanwhile."""
        grey = self.grey
        record = chat.record
        if grey is None or not chat.open or chat.agent is None:
            return
        if not grey.hands_over(record.buyer_id):
            return
        sink = grey.sink(chat.agent.id)
        if sink is not None:
            event_id = f"one:{record.inquiry_id}"
            self.send(SessionTransferred(event_id, self.shop_id, self.now, record.buyer_id, sink))

    def moved(self, chat: Chat, out: Assignment) -> None:
        """The buyer in session moves to another agent, who answers what is owed."""
        if chat.agent is not None:  # the assignment comes before the old session's close
            chat.agent.load -= 1
            self.chats.pop(chat.session_id, None)
        record = chat.record
        record.moves.append((out.ts, record.agent_id, out.agent_id, out.reason.value))
        record.agent_id = out.agent_id
        agent = self.agents[out.agent_id]
        agent.load += 1
        chat.agent, chat.session_id = agent, out.inquiry_id
        self.chats[out.inquiry_id] = chat
        if chat.owed_since is not None:  # a reply of its own (daemon.lab.world)
            self.answer(chat, agent, moved_reply_factor(self.seed, out.inquiry_id))

    def closed(self, out: SessionClosed) -> None:
        """A session ended: maybe an order, maybe a return, or writing again; or it moves
        to another agent (its assignment then comes before or after)."""
        chat = self.chats.pop(out.id.removeprefix("end:"), None)
        if chat is None:
            return
        if chat.agent is not None:
            chat.agent.load -= 1
        chat.agent = None
        if out.reason.value in MOVES:
            return
        chat.open = False
        record = chat.record
        record.session_ended = out.ts
        self.sessions.pop(record.buyer_id, None)
        self.owed(chat, out.ts)
        visit = chat.visit
        grey = self.grey
        if record.gave_up_at is None:  # a buyer who left writes no more and orders nothing
            if out.reason is CloseReason.AGENT_OFFLINE and chat.round < visit.rounds:
                self.at(out.ts + visit.reinquire_ms, self.write_again, chat)
                if grey is not None:  # this session orders nothing; the next one may
                    grey.closed(record.inquiry_id, 0.0, None)
                return
            agent = self.agents[out.agent_id]
            chance = order_chance(agent.true_conversion, chat.buyer.intent)
            order_at = out.ts + min(visit.order_after_ms, self.order_window())
            if visit.order_u < chance:
                self.at(order_at, self.order, chat)
            if grey is not None:
                grey.closed(record.inquiry_id, chance, order_at if order_at <= self.end else None)
        elif grey is not None:
            grey.closed(record.inquiry_id, 0.0, None)
        if visit.return_after_ms is not None:
            self.at(out.ts + visit.return_after_ms, self.come_back, chat.buyer)

    def chance(self, chat: Chat) -> float:
        """The true chance that a chat still open ends in an order, as things stand."""
        record = chat.record
        if record.gave_up_at is not None or record.agent_id is None:
            return 0.0
        return order_chance(self.agents[record.agent_id].true_conversion, chat.buyer.intent)

    def order_window(self) -> int:
        """Latest delay after a session at which an order is still credited to it."""
        return max(0, self.config.conversion_window - 1000)
