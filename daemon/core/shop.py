"""One shop's routing state machine: the rules of CONTRACT.md sections 2–4.

`ShopEngine.handle(event, now)` fires the timers due by `now`, then applies one decoded
event and returns the output events. Bad input raises `EventRejected` before anything
changes (its `outputs` carry what the due timers produced). Where the contract is silent,
the choices are written down in docs/routing.md and referred to here by their headings.

This module keeps the engine's state, its public API, timers, sessions and the handlers of
input events (the hot path, `MessageSent`, stays here and flat). The rest are module
functions that take the engine as first argument:

- `daemon/core/queueing.py`: queues: enqueue, unqueue, drain, `queue_update` emission
  (publish, the periodic `waiting` flush) and max_wait expiry / overflow;
- `daemon/core/transfer.py`: `session_transferred`: target choice and the handover;
- `daemon/core/reload.py`: applying a reloaded shop file;
- `daemon/core/estimate.py`: the announced wait.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from daemon.core.candidate import Candidate, build_candidates
from daemon.core.config import ShopConfig
from daemon.core.dedup import RecentIds
from daemon.core.model import (
    AGENT_TRANSITIONS,
    AgentState,
    Buyer,
    BuyerPhase,
    Changes,
    LastContact,
    Session,
    Trigger,
)
from daemon.core.queueing import (
    drain,
    enqueue,
    expire,
    flush_updates,
    forget_if_idle,
    publish,
    unqueue,
)
from daemon.core.timers import TimerHeap
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
    InquiryContext,
    MessageSent,
    Mode,
    OrderPlaced,
    OutputEvent,
    QueueStatus,
    SessionClosed,
    SessionTransferred,
)

SESSION_TIMER, EXPIRY_TIMER, TICK_TIMER = 0, 1, 2


class EventRejected(ValueError):
    """An input event the shop refuses; `reason` is a sentence for the dead-letter topic."""

    def __init__(self, reason: str, outputs: list[OutputEvent] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outputs: list[OutputEvent] = outputs or []


class ShopEngine:
    """Routing state and rules of one shop. See the module docstring."""

    def __init__(
        self, config: ShopConfig, *, dedup_capacity: int = 100_000, track: bool = False
    ) -> None:
        self.config = config
        # What changed since the last checkpoint; None when nobody checkpoints (simulator).
        self.changes: Changes | None = Changes() if track else None
        self.agents: dict[str, AgentState] = {
            a.id: AgentState(a.id, i) for i, a in enumerate(config.agents)
        }
        self.buyers: dict[str, Buyer] = {}
        self.timers = TimerHeap()
        self.recent_ends: deque[tuple[int, str]] = deque()
        self.seen = RecentIds(dedup_capacity)
        self.seq = 0
        self.now = 0
        self._out: list[OutputEvent] = []
        self.cands: dict[str, Candidate] = {}
        self.pool: Candidate | None = None
        self.agent_cands: dict[str, list[Candidate]] = {}
        self.neighbours: dict[str, list[Candidate]] = {}  # candidates sharing an agent
        self._match: list[dict[str, int]] = []
        self.configured_agents: frozenset[str] = frozenset()
        self._keep_ms = 0
        self._busy_threshold = 0
        self._session_timeout = 0
        self._handlers: dict[type, Callable[[Any], None]] = {
            BuyerInquired: self._on_inquiry,
            BuyerLeft: self._on_leave,
            OrderPlaced: self._on_order,
            SessionTransferred: self._on_transfer,
            MessageSent: self._on_message,
            AgentStatusChanged: self._on_agent_status,
            AgentStatsReported: self._on_agent_stats,
        }
        self.build_routing()

    # ------------------------------------------------------------------------ public API

    def handle(self, event: InputEvent, now: int) -> list[OutputEvent]:
        """Fire due timers, then apply `event`; return every output decided."""
        # The hot path: kept flat (every call here costs a measurable share per event).
        if self.timers.due(now):
            self._fire_due(now)
        elif now > self.now:
            self.now = now
        seen = self.seen
        if event.id in seen:
            return self._take()
        try:
            self._handlers[type(event)](event)  # raises EventRejected before any change
        except EventRejected as rejected:
            rejected.outputs = self._take()
            raise
        seen.add(event.id)
        changes = self.changes
        if changes is not None:
            changes.seen.append(event.id)
            buyer_id = getattr(event, "buyer_id", None)
            if buyer_id is not None:
                changes.buyers.add(buyer_id)
        ends = self.recent_ends
        if ends and ends[0][0] <= self.now - self._keep_ms:
            self._purge()
        out, self._out = self._out, []
        return out

    def on_timer(self, now: int) -> list[OutputEvent]:
        """Fire every timer due at or before `now`."""
        self._fire_due(now)
        self._purge()
        return self._take()

    def next_deadline(self) -> int | None:
        """The earliest time at which `on_timer` has something to do, or None."""
        return self.timers.next_deadline(self._resolve)

    def reconfigure(self, config: ShopConfig, now: int) -> list[OutputEvent]:
        """Apply a reloaded shop file; sessions and queues are kept (CONTRACT 5, Reload)."""
        self._fire_due(now)
        from daemon.core.reload import apply_reload  # noqa: PLC0415 (reload imports us)

        before = set(self.agents)
        apply_reload(self, config)
        if self.changes is not None:  # rare: write the whole shop again
            self.changes.agents |= before | set(self.agents)
            self.changes.buyers |= set(self.buyers)
            self.changes.other = True
        drain(self, self.all_candidates())
        return self._take()

    def all_candidates(self) -> list[Candidate]:
        """Every group's candidate, then the pool when it is not a single group."""
        cands = list(self.cands.values())
        if self.pool is not None and self.pool.key not in self.cands:
            cands.append(self.pool)
        return cands

    def candidate(self, key: str) -> Candidate | None:
        """A candidate by key (group name, or "" for a pool of several groups)."""
        if self.pool is not None and key == self.pool.key:
            return self.pool
        return self.cands.get(key)

    def build_routing(self) -> None:
        """(Re)build candidates, the match index and every agent's place in them."""
        self.cands, self.pool = build_candidates(self.config, self.agents)
        self.configured_agents = frozenset(a.id for a in self.config.agents)
        c = self.config
        self._keep_ms = max(c.sticky_window, c.conversion_window, c.queue.repeat_entry_window)
        self._busy_threshold = c.busy_threshold
        self._session_timeout = c.queue.session_timeout
        self.agent_cands = {}
        for cand in self.all_candidates():
            for agent_id in cand.caps:
                self.agent_cands.setdefault(agent_id, []).append(cand)
        self.neighbours = {
            cand.key: list(
                {o.key: o for a in cand.caps for o in self.agent_cands[a] if o is not cand}.values()
            )
            for cand in self.all_candidates()
        }
        self._match = [{}, {}, {}, {}]
        for i, group in enumerate(self.config.groups):
            m = group.match
            for dim, values in enumerate((m.crowd, m.items, m.intents, m.order_status)):
                for value in values:
                    self._match[dim].setdefault(value, i)
        for agent in self.agents.values():
            self._agent_changed(agent)

    def candidate_for(self, ctx: InquiryContext) -> Candidate | None:
        """Group matching (CONTRACT 3 rule 4): crowd, item, intent, order status, pool."""
        dims = (ctx.crowd, (ctx.item_id,), (ctx.intent,), (ctx.order_status,))
        for index, values in zip(self._match, dims, strict=True):
            found = [index[v] for v in values if v is not None and v in index]
            if found:
                return self.cands[self.config.groups[min(found)].name]
        return self.pool

    # ------------------------------------------------------------------------- plumbing

    def _take(self) -> list[OutputEvent]:
        out, self._out = self._out, []
        return out

    def _advance(self, now: int) -> None:
        self.now = max(self.now, now)

    def _check_agent(self, agent_id: str | None) -> None:
        if agent_id is not None and agent_id not in self.configured_agents:
            raise EventRejected(
                f"agent_id {agent_id!r} is not configured in shop {self.config.id!r}"
            )

    def _emit(self, event: OutputEvent) -> None:
        self._out.append(event)

    def _agent_changed(self, agent: AgentState) -> None:
        if self.changes is not None:
            self.changes.agents.add(agent.id)
        for cand in self.agent_cands.get(agent.id, ()):
            cand.refresh(agent)
            if cand.queue:
                self._mark_dirty(cand)

    def _purge(self) -> None:
        keep = self._keep_ms
        ends = self.recent_ends
        while ends and ends[0][0] <= self.now - keep:
            ended_at, buyer_id = ends.popleft()
            buyer = self.buyers.get(buyer_id)
            last = buyer.last if buyer else None
            if buyer is None or last is None or last.ended_at != ended_at:
                continue  # a later session of the buyer ended since
            self._touch(buyer_id)
            if buyer.phase is BuyerPhase.IDLE:
                del self.buyers[buyer_id]
            else:  # queued or in a session: past every window, so no rule reads it now
                buyer.last = None

    # --------------------------------------------------------------------------- timers

    def _resolve(self, kind: int, key: str) -> int | None:
        if kind == TICK_TIMER:
            cand = self.candidate(key)
            return (
                cand.last_tick + self.config.queue.update_interval if cand and cand.dirty else None
            )
        buyer = self.buyers.get(key)
        if buyer is None:
            return None
        if kind == SESSION_TIMER:
            s = buyer.session
            if s is None or s.buyer_waiting:
                return None
            return s.last_agent_at + self.config.queue.session_timeout
        entry = buyer.queued
        if entry is None or self.config.queue.max_wait <= 0:
            return None
        return entry.entered_at + self.config.queue.max_wait

    def _fire_due(self, now: int) -> None:
        """Fire due timers, each at its own deadline, then move the clock to `now`.

        A caller that wakes late (or a simulator that jumps) gets the same decisions, with
        the same timestamps, as one that woke exactly at every deadline.
        """
        while (due := self.timers.pop_due(now, self._resolve)) is not None:
            deadline, kind, key = due
            self._advance(deadline)
            if kind == TICK_TIMER:
                cand = self.candidate(key)
                if cand is not None:
                    flush_updates(self, cand)
            elif kind == SESSION_TIMER:
                buyer = self.buyers[key]
                agent_id = buyer.session.agent_id if buyer.session else ""
                self._close_session(buyer, CloseReason.TIMEOUT)
                drain(self, self.agent_cands.get(agent_id, ()))
            else:
                expire(self, self.buyers[key])
        self._advance(now)

    def arm_buyer_timers(self, buyer: Buyer) -> None:
        """Arm whichever of the buyer's timers its state calls for."""
        for kind in (SESSION_TIMER, EXPIRY_TIMER):
            deadline = self._resolve(kind, buyer.id)
            if deadline is not None:
                self.timers.arm(kind, buyer.id, deadline)

    def _touch(self, buyer_id: str) -> None:
        if self.changes is not None:
            self.changes.buyers.add(buyer_id)

    def _mark_dirty(self, cand: Candidate) -> None:
        if self.changes is not None:
            self.changes.other = True
        if not cand.dirty:
            cand.dirty = True
            cand.last_tick = max(cand.last_tick, self.now - self.config.queue.update_interval)
            self.timers.arm(
                TICK_TIMER, cand.key, cand.last_tick + self.config.queue.update_interval
            )

    # ---------------------------------------------------------------- sessions & queues

    def _start_session(
        self,
        buyer: Buyer,
        inquiry_id: str,
        cand: Candidate,
        agent_id: str,
        reason: AssignReason,
        trigger: Trigger,
        mode: Mode | None = None,
        waited_ms: int = 0,
    ) -> None:
        agent = self.agents[agent_id]
        self._touch(buyer.id)
        buyer.move(trigger)
        group = cand.member_groups.get(agent_id, cand.group)
        buyer.session = Session(inquiry_id, agent_id, cand.key, group, self.now, self.now)
        self.buyers[buyer.id] = buyer
        agent.sessions[buyer.id] = None
        agent.quiet[buyer.id] = self.now
        busy = agent.pending > self.config.busy_threshold
        agent.count_assignment(reason, self.now, busy=busy, mode=mode, group=group)
        for c in self.agent_cands.get(agent_id, ()):
            c.sessions_sum += 1
            c.rerank_if_prior_drifted()
        if mode is not None:
            cand.chosen(agent_id)
        self._agent_changed(agent)
        self.timers.arm(SESSION_TIMER, buyer.id, self.now + self.config.queue.session_timeout)
        self._emit(
            Assignment(
                id=f"asg:{inquiry_id}",
                shop_id=self.config.id,
                ts=self.now,
                inquiry_id=inquiry_id,
                buyer_id=buyer.id,
                agent_id=agent_id,
                group=group,
                reason=reason,
                mode=mode,
                waited_ms=waited_ms,
            )
        )

    def _close_session(self, buyer: Buyer, reason: CloseReason) -> None:
        s = buyer.session
        assert s is not None
        self._touch(buyer.id)
        buyer.move("close")
        buyer.session = None
        buyer.last = LastContact(s.agent_id, s.cand, self.now, s.converted)
        self.recent_ends.append((self.now, buyer.id))
        self._detach(buyer.id, s)
        self._emit_closed(buyer.id, s, reason)

    def _detach(self, buyer_id: str, s: Session) -> None:
        agent = self.agents[s.agent_id]
        del agent.sessions[buyer_id]
        if s.buyer_waiting:
            agent.pending -= 1
        else:
            del agent.quiet[buyer_id]
        cand = self.candidate(s.cand)
        if cand is not None:
            cand.observe_session(self.now - s.started_at)
        self._agent_changed(agent)

    def _emit_closed(self, buyer_id: str, s: Session, reason: CloseReason) -> None:
        self._emit(
            SessionClosed(
                id=f"end:{s.inquiry_id}",
                shop_id=self.config.id,
                ts=self.now,
                buyer_id=buyer_id,
                agent_id=s.agent_id,
                reason=reason,
            )
        )

    # --------------------------------------------------------------------- input events

    def _on_inquiry(self, ev: BuyerInquired) -> None:
        buyer = self.buyers.get(ev.buyer_id) or Buyer(ev.buyer_id)
        if buyer.session is not None:
            s = buyer.session
            self._emit(
                Assignment(
                    id=f"asg:{ev.id}",
                    shop_id=self.config.id,
                    ts=self.now,
                    inquiry_id=ev.id,
                    buyer_id=buyer.id,
                    agent_id=s.agent_id,
                    group=s.group,
                    reason=AssignReason.ACTIVE_SESSION,
                    mode=None,
                    waited_ms=0,
                )
            )
            return
        if buyer.queued is not None:
            cand = self.candidate(buyer.queued.cand)
            assert cand is not None
            publish(self, buyer.id, buyer.queued, cand, QueueStatus.WAITING)
            return
        # rules 2 and 3 change state only when they apply, so a rejection below is clean
        if buyer.last is not None and self._repeat_entry(buyer, ev, buyer.last):
            return
        if buyer.last is not None and self._sticky(buyer, ev, buyer.last):
            return
        cand = self.candidate_for(ev.context)
        if cand is None:
            raise EventRejected(
                f"no group of shop {self.config.id!r} matches this inquiry's context and no "
                "group has accept_unmatched = true"
            )
        pick = cand.choose()
        if pick is None:
            enqueue(self, buyer, ev, cand)
        else:
            agent_id, mode = pick
            self._start_session(buyer, ev.id, cand, agent_id, AssignReason.ROUTED, "route", mode)

    def _repeat_entry(self, buyer: Buyer, ev: BuyerInquired, last: LastContact) -> bool:
        window = self.config.queue.repeat_entry_window
        cand = self.candidate(last.cand)
        if window <= 0 or self.now - last.ended_at >= window or cand is None:
            return False
        member = cand.is_member(last.agent_id)
        if not (cand.caps[last.agent_id] is not None if member else cand.queueing):
            return False  # repeat entry only where queueing applies (CONTRACT 3.5)
        prev = self.agents.get(last.agent_id)
        reason = AssignReason.REPEAT_ENTRY
        if prev is not None and prev.status is AgentStatus.ONLINE and member:
            self._start_session(buyer, ev.id, cand, prev.id, reason, "route")
            return True
        # the fallback is the previous agent's own group, even after a session in the pool
        group = self.cands.get(cand.member_groups[last.agent_id]) if member else None
        fallback = group or cand
        if (pick := fallback.choose()) is not None:
            self._start_session(buyer, ev.id, fallback, pick[0], reason, "route")
        else:
            enqueue(self, buyer, ev, fallback)
        return True

    def _sticky(self, buyer: Buyer, ev: BuyerInquired, last: LastContact) -> bool:
        window = self.config.sticky_window
        cand = self.candidate(last.cand)
        if window <= 0 or self.now - last.ended_at >= window or cand is None:
            return False
        agent = self.agents.get(last.agent_id)
        if agent is None or not cand.is_eligible(agent):
            return False
        self._start_session(buyer, ev.id, cand, agent.id, AssignReason.STICKY, "route")
        return True

    def _on_leave(self, ev: BuyerLeft) -> None:
        buyer = self.buyers.get(ev.buyer_id)
        if buyer is None or buyer.queued is None:
            return  # in a session (ends by timeout) or unknown: nothing to do
        entry, cand = unqueue(self, buyer, "leave")
        publish(self, buyer.id, entry, cand, QueueStatus.LEFT)
        forget_if_idle(self, buyer)

    def _on_message(self, ev: MessageSent) -> None:
        # The hot path (most events are messages): kept flat on purpose.
        if ev.agent_id is not None:
            self._check_agent(ev.agent_id)
        buyer = self.buyers.get(ev.buyer_id)
        s = buyer.session if buyer is not None else None
        if s is None:
            return  # no open session: a late message after a close changes nothing
        agent = self.agents[s.agent_id]
        threshold = self._busy_threshold
        if ev.sender == "buyer":
            if not s.buyer_waiting:
                s.buyer_waiting = True
                del agent.quiet[ev.buyer_id]
                agent.pending += 1
                if agent.pending == threshold + 1:
                    self._agent_changed(agent)  # became busy
            return
        agent.quiet.pop(ev.buyer_id, None)
        agent.quiet[ev.buyer_id] = self.now  # now the newest
        s.last_agent_at = self.now
        self.timers.arm(SESSION_TIMER, ev.buyer_id, self.now + self._session_timeout)
        for cand in self.agent_cands.get(s.agent_id, ()):
            if cand.queue:  # the session ends later now: estimates in line may move
                self._mark_dirty(cand)
        if s.buyer_waiting:
            s.buyer_waiting = False
            agent.pending -= 1
            if agent.pending == threshold:
                self._agent_changed(agent)  # no longer busy

    def _on_order(self, ev: OrderPlaced) -> None:
        buyer = self.buyers.get(ev.buyer_id)
        if buyer is None:
            return
        if buyer.session is not None:
            agent_id, already = buyer.session.agent_id, buyer.session.converted
            buyer.session.converted = True
        elif (
            buyer.last is not None
            and self.now - buyer.last.ended_at < self.config.conversion_window
        ):
            agent_id, already = buyer.last.agent_id, buyer.last.converted
            buyer.last.converted = True
        else:
            return  # no session to credit (CONTRACT 1.2 order)
        agent = self.agents[agent_id]
        if self.changes is not None:
            self.changes.agents.add(agent_id)
        agent.orders += 1
        agent.order_amount += ev.amount or 0.0
        if not already:
            agent.converted_sessions += 1
            for cand in self.agent_cands.get(agent_id, ()):
                cand.converted_sum += 1
                cand.rerank_if_prior_drifted()
            self._agent_changed(agent)

    def _on_agent_stats(self, ev: AgentStatsReported) -> None:
        self._check_agent(ev.agent_id)
        agent = self.agents[ev.agent_id]
        agent.external_rate = ev.conversion_rate
        self._agent_changed(agent)

    def _on_agent_status(self, ev: AgentStatusChanged) -> None:
        self._check_agent(ev.agent_id)
        agent = self.agents[ev.agent_id]
        old = agent.status
        if old is ev.status:
            return
        change = AGENT_TRANSITIONS[(old, ev.status)]
        if old is AgentStatus.ONLINE and agent.online_since is not None:
            agent.online_ms += self.now - agent.online_since
            agent.online_since = None
        if ev.status is AgentStatus.ONLINE:
            agent.online_since = self.now
        agent.status = ev.status
        if change.starts_shift:
            agent.shift_assignments = 0
        if change.closes_sessions:
            for buyer_id in list(agent.sessions):
                self._close_session(self.buyers[buyer_id], CloseReason.AGENT_OFFLINE)
        self._agent_changed(agent)
        if change.may_free_capacity:
            drain(self, self.agent_cands.get(agent.id, ()))

    def _on_transfer(self, ev: SessionTransferred) -> None:
        from daemon.core.transfer import on_transfer  # noqa: PLC0415 (transfer imports us)

        on_transfer(self, ev)
