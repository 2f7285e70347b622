"""One shop's routing state machine: the rules of docs/contract.md §2–4.

`ShopEngine.handle(event, now)` fires the timers due by `now`, then applies one decoded
event and returns the output events. Bad input raises `EventRejected` before anything
changes (its `outputs` carry what the due timers produced). Where the contract is silent,
the choices are written down in docs/routing.md and referred to here by their headings.

The engine is a thin front over parts that each keep their own state
(docs/architecture.md):

- `ShopState` (state.py): configuration, clock, agents, buyers, the timer heap;
- `Effects` (effects.py): the outputs decided and what changed for checkpoints;
- `Routing` (routing.py): candidates, the match index, re-ranking agents;
- `Sessions` (sessions.py): start, close, transfer; messages and orders;
- `Queues` (queues.py): enqueue, drain, queue updates, max_wait;
- `INQUIRY_RULES` (rules.py): the order of the inquiry rules of contract §3.

The front keeps the dispatch table of input events, the agent status changes (a transition
table in model.py) and the timers. The hot path — `handle` and `Sessions.on_message` — is
kept flat: no extra calls per event beyond the handler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from daemon.core.arrivals import record_status
from daemon.core.candidate import Candidate, runtime_of
from daemon.core.config import ShopConfig
from daemon.core.dedup import RecentIds
from daemon.core.effects import Effects
from daemon.core.errors import EventRejected
from daemon.core.model import AGENT_TRANSITIONS, AgentState, Buyer, Changes
from daemon.core.queues import Queues
from daemon.core.reload import reconcile_agents
from daemon.core.routing import Routing
from daemon.core.rules import Parts, inquire
from daemon.core.sessions import Sessions
from daemon.core.state import ShopState
from daemon.core.timers import (
    EXPIRY_TIMER,
    OVERDUE_TIMER,
    SESSION_TIMER,
    TICK_TIMER,
    UNANSWERED_TIMER,
)
from topics.events import (
    AgentStatsReported,
    AgentStatus,
    AgentStatusChanged,
    BuyerInquired,
    BuyerLeft,
    CloseReason,
    InputEvent,
    InquiryContext,
    MessageSent,
    OrderPlaced,
    OutputEvent,
    SessionTransferred,
)

__all__ = ["EventRejected", "ShopEngine"]


class ShopEngine:
    """Routing state and rules of one shop. See the module docstring."""

    def __init__(
        self,
        config: ShopConfig,
        *,
        dedup_capacity: int = 100_000,
        track: bool = False,
        oracle: Mapping[str, float] | None = None,
    ) -> None:
        self.state = state = ShopState.fresh(config)
        self.effects = effects = Effects(config.id, config.version, state.experiments, track=track)
        self.seen = RecentIds(dedup_capacity)
        self.routing = routing = Routing(state, effects, oracle)
        self.sessions = sessions = Sessions(state, effects, routing)
        self.queues = queues = Queues(state, effects, routing, sessions)
        self.parts = Parts(state, effects, routing, sessions, queues)
        self._handlers: dict[type, Callable[[Any], None]] = {
            BuyerInquired: self._on_inquiry,
            BuyerLeft: queues.on_leave,
            OrderPlaced: sessions.on_order,
            SessionTransferred: self._on_transfer,
            MessageSent: sessions.on_message,
            AgentStatusChanged: self._on_agent_status,
            AgentStatsReported: self._on_agent_stats,
        }
        routing.build()

    # ------------------------------------------------------------------------ public API

    def handle(self, event: InputEvent, now: int) -> list[OutputEvent]:
        """Fire due timers, then apply `event`; return every output decided."""
        # The hot path: kept flat (every call here costs a measurable share per event).
        state, effects = self.state, self.effects
        heap = state.timers.heap
        if heap and heap[0][0] <= now:
            self._fire_due(now)
        elif now > state.now:
            state.now = now
        seen = self.seen
        event_id = event.id
        if event_id in seen:
            return effects.take()
        try:
            self._handlers[type(event)](event)  # raises EventRejected before any change
        except EventRejected as rejected:
            rejected.outputs = effects.take()
            raise
        seen.add_new(event_id)
        if effects.changes is not None:
            effects.handled(event)
        sessions = self.sessions
        ends = sessions.recent_ends
        if ends and ends[0][0] <= state.now - sessions.keep_ms:
            sessions.purge()
        out = effects.out
        effects.out = []
        return out

    def on_timer(self, now: int) -> list[OutputEvent]:
        """Fire every timer due at or before `now`."""
        self._fire_due(now)
        self.sessions.purge()
        return self.effects.take()

    def next_deadline(self) -> int | None:
        """The earliest time at which `on_timer` has something to do, or None."""
        return self.state.timers.next_deadline(self._resolve)

    def reconfigure(self, config: ShopConfig, now: int) -> list[OutputEvent]:
        """Apply a reloaded shop file; sessions and queues are kept (contract §5, Reload)."""
        self._fire_due(now)
        state = self.state
        before = set(state.agents)
        learned = {c.key: runtime_of(c) for c in self.routing.all()}
        queued = [
            (item.buyer_id, state.buyers[item.buyer_id].queued)
            for c in self.routing.all()
            for item in c.line.items
        ]
        state.config, state.config_at = config, now
        self.effects.configured(config.version)
        state.experiments.configure(config.experiment, now, config.sticky_window)
        reconcile_agents(state.agents, config)
        self.rebuild(learned)
        for buyer_id, entry in queued:
            assert entry is not None
            self.queues.rehome(buyer_id, entry)
        for buyer in state.buyers.values():
            self.arm_buyer_timers(buyer)
        changes = self.effects.changes
        if changes is not None:  # rare: write the whole shop again
            changes.agents |= before | set(state.agents)
            changes.buyers |= set(state.buyers)
            changes.other = True
        self.queues.drain(self.routing.all())
        return self.effects.take()

    def rebuild(self, learned: dict[str, dict[str, object]]) -> None:
        """Rebuild what derives from the shop file, keeping what candidates learned: who
        is overdue and busy first (`Sessions.configure`), which the ranks then read."""
        self.sessions.configure()
        self.routing.rebuild(learned)

    def arm_buyer_timers(self, buyer: Buyer) -> None:
        """Arm whichever of the buyer's timers its state calls for."""
        timers, sessions = self.state.timers, self.sessions
        deadline = sessions.timeout_deadline(buyer)
        if deadline is not None:
            timers.arm(SESSION_TIMER, buyer.id, deadline)
        overdue = sessions.overdue_at(buyer)
        if overdue is not None:
            timers.arm(OVERDUE_TIMER, buyer.id, overdue)
        unanswered = sessions.unanswered_at(buyer)
        if unanswered is not None and buyer.id not in sessions.stranded:
            timers.arm(UNANSWERED_TIMER, buyer.id, unanswered)
        self.queues.arm_expiry(buyer)

    # --------------------------------------------------------------- views for callers

    @property
    def config(self) -> ShopConfig:
        """The shop file in force."""
        return self.state.config

    @property
    def agents(self) -> dict[str, AgentState]:
        """Agents by id (those dropped from the file stay while they have sessions)."""
        return self.state.agents

    @property
    def buyers(self) -> dict[str, Buyer]:
        """Buyers the shop remembers: queued, in a session, or with a recent contact."""
        return self.state.buyers

    @property
    def now(self) -> int:
        """The shop's clock (epoch ms): the latest time seen."""
        return self.state.now

    @now.setter
    def now(self, value: int) -> None:
        self.state.now = value

    @property
    def seq(self) -> int:
        """Arrivals in line so far (the queues' tie-break counter)."""
        return self.queues.seq

    @seq.setter
    def seq(self, value: int) -> None:
        self.queues.seq = value

    @property
    def changes(self) -> Changes | None:
        """What changed since the last checkpoint (None unless the shop is tracked)."""
        return self.effects.changes

    def all_candidates(self) -> list[Candidate]:
        """Every group's candidate, then the pool when it is not a single group."""
        return self.routing.all()

    def candidate(self, key: str) -> Candidate | None:
        """A candidate by key (group name, or "" for a pool of several groups)."""
        return self.routing.candidate(key)

    def candidate_for(self, ctx: InquiryContext) -> Candidate | None:
        """The candidate an inquiry with this context goes to (contract §3 rule 4)."""
        return self.routing.candidate_for(ctx)

    # --------------------------------------------------------------------------- timers

    def _resolve(self, kind: int, key: str) -> int | None:
        if kind == TICK_TIMER:
            return self.routing.tick_deadline(key)
        buyer = self.state.buyers.get(key)
        if buyer is None:
            return None
        if kind == OVERDUE_TIMER:
            return self.sessions.overdue_at(buyer)
        if kind == UNANSWERED_TIMER:
            return self.sessions.unanswered_at(buyer)
        if kind == SESSION_TIMER:
            return self.sessions.timeout_deadline(buyer)
        return self.queues.expiry_deadline(buyer)

    def _fire_due(self, now: int) -> None:
        """Fire due timers, each at its own deadline, then move the clock to `now`.

        A caller that wakes late (or a simulator that jumps) gets the same decisions, with
        the same timestamps, as one that woke exactly at every deadline.
        """
        state, routing, queues = self.state, self.routing, self.queues
        while (due := state.timers.pop_due(now, self._resolve)) is not None:
            deadline, kind, key = due
            state.advance(deadline)
            if kind == OVERDUE_TIMER:
                self.sessions.mark_overdue(state.buyers[key])
            elif kind == UNANSWERED_TIMER:
                left = self.sessions.unanswered(state.buyers[key])
                if left is not None:
                    queues.drain(routing.of_agent(left))
            elif kind == TICK_TIMER:
                cand = routing.candidate(key)
                if cand is not None:
                    queues.flush(cand)
            elif kind == SESSION_TIMER:
                buyer = state.buyers[key]
                agent_id = buyer.session.agent_id if buyer.session else ""
                self.sessions.close(buyer, CloseReason.TIMEOUT)
                queues.drain(routing.of_agent(agent_id))
            else:
                assert kind == EXPIRY_TIMER
                queues.expire(state.buyers[key])
        state.advance(now)

    # --------------------------------------------------------------------- input events

    def _on_inquiry(self, ev: BuyerInquired) -> None:
        inquire(self.parts, ev)

    def _on_transfer(self, ev: SessionTransferred) -> None:
        left = self.sessions.transfer(ev)
        self.queues.drain(self.routing.of_agent(left))

    def _on_agent_stats(self, ev: AgentStatsReported) -> None:
        self.routing.check_agent(ev.agent_id)
        agent = self.state.agents[ev.agent_id]
        agent.external_rate = ev.conversion_rate
        self.routing.agent_changed(agent)

    def _on_agent_status(self, ev: AgentStatusChanged) -> None:
        self.routing.check_agent(ev.agent_id)
        now = self.state.now
        agent = self.state.agents[ev.agent_id]
        old = agent.status
        if old is ev.status:
            return
        change = AGENT_TRANSITIONS[(old, ev.status)]
        if old is AgentStatus.ONLINE and agent.online_since is not None:
            agent.online_ms += now - agent.online_since
            agent.online_since = None
        if ev.status is AgentStatus.ONLINE:
            agent.online_since = now
        agent.status = ev.status
        record_status(agent, old, ev.status, now)
        if change.starts_shift:
            agent.shift_assignments = 0
        if change.closes_sessions:
            self.sessions.close_all(agent, CloseReason.AGENT_OFFLINE)
        self.routing.agent_changed(agent)
        self.routing.forget_coming(agent.id)  # who may come online changed
        if change.may_free_capacity:
            self.queues.drain(self.routing.of_agent(agent.id))
