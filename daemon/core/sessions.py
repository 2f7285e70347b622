"""Sessions of one shop: opening, closing and handing over; what is said and bought in them.

A session runs from an `assignment` to a `session_closed` (contract §3.2). `Sessions` opens
one with `start` (the agent's counters, its place in its candidates and the timeout timer
follow), closes one with `close` (timeout, agent offline) and hands one over with `transfer`
(contract §1.2 `transfer`; docs/routing.md, Transfers). `on_message` and `on_order` apply
what happens inside a session: who owes a reply, when it times out, which agent an order
credits. Ended sessions are remembered as the buyer's `last` contact for the longest of the
sticky, conversion and repeat-entry windows (`recent_ends`, `purge`).

Reply clocks (contract §3.6): a buyer's message starts its session's clock
(`Session.waiting_since`) unless one runs; the agent's next message stops it, and the reply
time goes into the figures of the session's group (`Candidate.replies`). A clock that runs
`[replies] deadline` makes the buyer overdue at that very time (the OVERDUE timer: `overdue_at`,
`mark_overdue`); a reply, a close or a transfer ends that. A transfer hands the running clock
to the new agent with the question, its start kept. Each agent counts its buyers owed a
reply (`pending`) and those overdue (`overdue`), and `overdue_by_group` the overdue ones per
group: all counted as they change, never by a scan, and derived again after a restore or a
reload (`recount`: clocks keep their start, the overdue flags follow the deadline in force).

Moves (contract §3.6, `[replies] reassign_after`): a buyer whose first message of a session
has gone unanswered that long (the UNANSWERED timer: `unanswered_at`, counted from the
session's start when the question came with a move or a transfer) is moved to the agent its
session's candidate picks with the silent one excluded: the old session closes
`unanswered`, a new one opens `unanswered` (`moved_id`) with the question and its clock,
once: a session opened by a move is never moved again (`Session.moved`).
With nobody to take it the buyer is `stranded` and moved, before the line, by the next
`Queues.drain` of that candidate; a reply first stops it. No way back (`_no_way_back`): the
session the silent agent left unanswered is no contact (nor credited for an order), and an
earlier contact with that agent is forgotten, so sticky and repeat entry, which read the
buyer's `last` contact, cannot lead back to it; a stranded session that closes leaves the
buyer its earlier contact with another agent, if any, else the buyer is forgotten at once.

Busyness (contract §3.4) is decided in one place, `is_busy`: pending above
`busy_threshold`, or, with `[replies] overdue_is_busy`, any overdue buyer. `update_busy`
keeps each agent's flag (`AgentState.busy`, which the ranks read) and re-ranks the agent
when it flips.

Freeing capacity does not serve the queues here: the caller drains them (`Queues.drain`).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable

from daemon.core.candidate import Candidate
from daemon.core.effects import Effects
from daemon.core.errors import EventRejected
from daemon.core.model import (
    AgentState,
    Buyer,
    BuyerPhase,
    LastContact,
    Session,
    Trigger,
)
from daemon.core.routing import Routing
from daemon.core.state import ShopState
from daemon.core.timers import OVERDUE_TIMER, SESSION_TIMER, UNANSWERED_TIMER
from topics.events import (
    AgentStatus,
    AssignReason,
    CloseReason,
    MessageSent,
    Mode,
    OrderPlaced,
    SessionTransferred,
)

# the reasons a session opens for an inquiry (a transfer or a move continues one): what an
# experiment counts as a session of its arm (contract §3.7)
OPENING = frozenset(
    (AssignReason.ROUTED, AssignReason.STICKY, AssignReason.REPEAT_ENTRY, AssignReason.DEQUEUED)
)


class Sessions:
    """Open sessions and recently ended ones; see the module docstring."""

    __slots__ = (
        "_busy_threshold",
        "_deadline",
        "_effects",
        "_overdue_busy",
        "_reassign_after",
        "_routing",
        "_state",
        "_timeout",
        "keep_ms",
        "overdue_by_group",
        "recent_ends",
        "stranded",
    )

    def __init__(self, state: ShopState, effects: Effects, routing: Routing) -> None:
        self._state = state
        self._effects = effects
        self._routing = routing
        self.recent_ends: deque[tuple[int, str]] = deque()  # (ended at, buyer id), oldest first
        self.keep_ms = 0  # how long an ended session matters to any rule
        self._busy_threshold = 0
        self._timeout = 0
        self._deadline = 0
        self._overdue_busy = False
        self.overdue_by_group: dict[str, int] = {}  # group -> its buyers overdue now
        # buyers due to move for an unanswered first message with nobody to take them yet,
        # in the order they fell due (`move_stranded` moves them as soon as it can)
        self.stranded: dict[str, None] = {}
        self._reassign_after = 0
        self.configure()

    def configure(self) -> None:
        """Take the settings of the shop file (again, after a reload), and count who is
        overdue and busy under them (`recount`)."""
        c = self._state.config
        self.keep_ms = max(c.sticky_window, c.conversion_window, c.queue.repeat_entry_window)
        self._busy_threshold = c.busy_threshold
        self._timeout = c.queue.session_timeout
        self._deadline = c.replies.deadline
        self._overdue_busy = c.replies.overdue_is_busy
        self._reassign_after = c.replies.reassign_after
        self.recount()

    # ---------------------------------------------------------------- busyness, clocks

    def is_busy(self, agent: AgentState) -> bool:
        """Whether the agent is busy (contract §3.4): the one place that decides it."""
        return agent.pending > self._busy_threshold or (self._overdue_busy and agent.overdue > 0)

    def update_busy(self, agent: AgentState) -> None:
        """Take the agent's busy flag again after its pending or overdue count moved (and
        nothing else about it): when it flips, only the ranks that read it move."""
        busy = self.is_busy(agent)
        if busy is not agent.busy:
            agent.busy = busy
            self._routing.busy_changed(agent)

    def recount(self) -> None:
        """Derive who is overdue (each session's flag, each agent's count,
        `overdue_by_group`) and who is busy from the open sessions, under the deadline in
        force at the shop's clock: after a restore or a reload. Nothing is re-ranked here:
        the caller builds the candidates' ranks afresh after it."""
        state = self._state
        passed = state.now - self._deadline  # a clock started at or before this is overdue
        by_group: dict[str, int] = {}
        agents = state.agents
        for agent in agents.values():
            agent.overdue = 0
        for buyer in state.buyers.values():
            s = buyer.session
            if s is None:
                continue
            s.overdue = s.buyer_waiting and s.waiting_since <= passed
            if s.overdue and (owing := agents.get(s.agent_id)) is not None:
                owing.overdue += 1
                if s.group is not None:
                    by_group[s.group] = by_group.get(s.group, 0) + 1
        self.overdue_by_group = by_group
        for agent in agents.values():
            agent.busy = self.is_busy(agent)
        due = [
            (at, buyer.id)
            for buyer in state.buyers.values()
            if (at := self.unanswered_at(buyer)) is not None and at <= state.now
        ]
        self.stranded = dict.fromkeys(buyer_id for _, buyer_id in sorted(due))

    def overdue_at(self, buyer: Buyer) -> int | None:
        """When the buyer becomes overdue if the agent does not reply, or None (no clock
        runs, or it is overdue already)."""
        s = buyer.session
        if s is None or not s.buyer_waiting or s.overdue:
            return None
        return s.waiting_since + self._deadline

    def unanswered_at(self, buyer: Buyer) -> int | None:
        """When the buyer's first message of its session has gone unanswered for
        `reassign_after` (counted from its session's start when it came moved with it), or
        None: off, no clock, or the agent has written in the session."""
        s = buyer.session
        after = self._reassign_after
        if not after or s is None or not s.buyer_waiting or s.answered or s.moved:
            return None
        return max(s.waiting_since, s.started_at) + after

    def unanswered(self, buyer: Buyer) -> str | None:
        """The buyer's first message reached `reassign_after` unanswered (the UNANSWERED
        timer): move it, or keep it to move as soon as someone can take it. The agent it
        left, if it moved (whose candidates the caller drains)."""
        self.stranded[buyer.id] = None
        return self._try_move(buyer)

    def move_stranded(self, cands: Iterable[Candidate]) -> list[Candidate]:
        """Move the buyers due to move in `cands` that an agent of their session's candidate,
        the silent one excluded, can take now (contract §3.6: as soon as one can), until
        none can: a move frees a slot of the agent it leaves, which may be the way out for a
        buyer looked at before it, in `cands` or in another candidate of that agent.
        `cands` with those candidates added: the caller serves their lines too."""
        cands = list(cands)
        keys = {c.key for c in cands}
        buyers = self._state.buyers
        moved = True
        while moved:  # each move takes a buyer out of `stranded` for good: it ends
            moved = False
            for buyer_id in list(self.stranded):
                session = buyers[buyer_id].session
                if session is None or session.cand not in keys:
                    continue
                left = self._try_move(buyers[buyer_id])
                if left is None:
                    continue
                moved = True
                for cand in self._routing.of_agent(left):
                    if cand.key not in keys:
                        keys.add(cand.key)
                        cands.append(cand)
        return cands

    def _try_move(self, buyer: Buyer) -> str | None:
        """Move a buyer due to move if someone can take it now; the agent it left."""
        s = buyer.session
        assert s is not None
        cand = self._routing.candidate(s.cand)
        policy = self._state.experiments.policy_of(buyer.id)
        if cand is None or (pick := cand.choose(s.agent_id, policy)) is None:
            return None
        del self.stranded[buyer.id]
        self._move(buyer, cand, *pick)
        return s.agent_id

    def _move(self, buyer: Buyer, cand: Candidate, agent_id: str, mode: Mode) -> None:
        """Hand the buyer from the agent who left its first message unanswered to
        `agent_id`: the old session closes `unanswered`, the new one starts `unanswered`
        with the question and its clock (its start kept); no way back (`_no_way_back`)."""
        old = buyer.session
        assert old is not None
        reason = CloseReason.UNANSWERED
        opening = AssignReason.UNANSWERED
        self._hand_over(buyer, cand, agent_id, moved_id(old.inquiry_id), reason, opening, mode)
        self._no_way_back(buyer, old.agent_id)
        self._state.agents[old.agent_id].taken_unanswered += 1
        self._effects.agent_changed(old.agent_id)
        home = self._routing.cands.get(old.group) if old.group is not None else None
        if home is not None:
            home.replies.count_reassigned(reason.value)
            self._effects.other_changed()

    def mark_overdue(self, buyer: Buyer) -> None:
        """The buyer's reply clock reached the deadline (the OVERDUE timer)."""
        s = buyer.session
        assert s is not None
        s.overdue = True
        agent = self._state.agents[s.agent_id]
        agent.overdue += 1
        self._count_overdue(s.group, 1)
        if agent.overdue == 1:
            self.update_busy(agent)

    def _count_overdue(self, group: str | None, change: int) -> None:
        if group is not None:
            by_group = self.overdue_by_group
            by_group[group] = by_group.get(group, 0) + change

    # ------------------------------------------------------------------ opening, closing

    def start(
        self,
        buyer: Buyer,
        inquiry_id: str,
        cand: Candidate,
        agent_id: str,
        reason: AssignReason,
        trigger: Trigger,
        mode: Mode | None = None,
        waited_ms: int = 0,
    ) -> Session:
        """Open a session of `buyer` with `agent_id`, chosen in `cand`; emit the assignment."""
        state = self._state
        now = state.now
        agent = state.agents[agent_id]
        self._effects.buyer_changed(buyer.id)
        buyer.move(trigger)
        group = cand.member_groups.get(agent_id, cand.group)
        buyer.session = session = Session(inquiry_id, agent_id, cand.key, group, now, now)
        session.opened_at = now
        state.buyers[buyer.id] = buyer
        agent.sessions[buyer.id] = None
        agent.quiet[buyer.id] = now
        agent.count_assignment(reason, now, busy=agent.busy, mode=mode, group=group)
        for c in self._routing.agent_cands.get(agent_id, ()):
            c.stats.started()
            c.rerank_if_prior_drifted(started=True)
        if mode is not None:
            cand.chosen(agent_id, mode)
        self._routing.agent_changed(agent)
        state.timers.arm(SESSION_TIMER, buyer.id, now + self._timeout)
        self._effects.assignment(
            now, inquiry_id, buyer.id, agent_id, group, reason, mode, waited_ms
        )
        if reason in OPENING and (exp := state.experiments.running) is not None:
            if reason is not AssignReason.DEQUEUED:  # a queued buyer came when it queued
                exp.came(buyer.id, now)
            exp.opened(buyer.id, waited_ms, now)
            self._effects.other_changed()
        return session

    def close(self, buyer: Buyer, reason: CloseReason) -> None:
        """End the buyer's session; it becomes the buyer's last contact."""
        s = buyer.session
        assert s is not None
        now = self._state.now
        self._effects.buyer_changed(buyer.id)
        buyer.move("close")
        buyer.session = None
        stranded = buyer.id in self.stranded
        if stranded:  # its agent never answered: no contact, no order credit, no way back
            del self.stranded[buyer.id]
            self._no_way_back(buyer, s.agent_id)
        else:
            buyer.last = LastContact(s.agent_id, s.cand, now, s.converted, s.opened_at)
            self.recent_ends.append((now, buyer.id))
            if buyer.silent is not None and buyer.silent[0] == s.agent_id:
                buyer.silent = None  # an answered contact with it since
        self._detach(buyer.id, s)
        self._effects.session_closed(now, s.inquiry_id, buyer.id, s.agent_id, reason)
        if stranded and buyer.last is None:  # nothing left to remember it for
            del self._state.buyers[buyer.id]

    def _no_way_back(self, buyer: Buyer, silent: str) -> None:
        """Forget the buyer's last contact if it was with the agent who left its first
        message unanswered (sticky and repeat entry read it), and remember that agent for
        repeat entry's fallback (contract §3.6)."""
        if buyer.last is not None and buyer.last.agent_id == silent:
            buyer.last = None
        buyer.silent = (silent, self._state.now)

    def close_all(self, agent: AgentState, reason: CloseReason) -> None:
        """End every session of the agent."""
        for buyer_id in list(agent.sessions):
            self.close(self._state.buyers[buyer_id], reason)

    def _detach(self, buyer_id: str, s: Session) -> None:
        state = self._state
        agent = state.agents[s.agent_id]
        del agent.sessions[buyer_id]
        if s.buyer_waiting:
            agent.pending -= 1
            if s.overdue:
                agent.overdue -= 1
                self._count_overdue(s.group, -1)
        else:
            del agent.quiet[buyer_id]
        agent.busy = self.is_busy(agent)  # agent_changed re-ranks it below
        cand = self._routing.candidate(s.cand)
        if cand is not None:
            cand.stats.observe_session(state.now - s.started_at)
        self._routing.agent_changed(agent)

    def timeout_deadline(self, buyer: Buyer) -> int | None:
        """When the buyer's session times out if nothing more is said, or None."""
        s = buyer.session
        if s is None or s.buyer_waiting:
            return None
        return s.last_agent_at + self._state.config.queue.session_timeout

    def purge(self) -> None:
        """Forget ended sessions past every window that reads them (`keep_ms`)."""
        state = self._state
        keep = self.keep_ms
        ends = self.recent_ends
        while ends and ends[0][0] <= state.now - keep:
            ended_at, buyer_id = ends.popleft()
            buyer = state.buyers.get(buyer_id)
            last = buyer.last if buyer else None
            if buyer is None or last is None or last.ended_at != ended_at:
                continue  # a later session of the buyer ended since
            self._effects.buyer_changed(buyer_id)
            if buyer.phase is BuyerPhase.IDLE:
                del state.buyers[buyer_id]
            else:  # queued or in a session: past every window, so no rule reads it now
                buyer.last = None

    # ---------------------------------------------------------------- inside a session

    def on_message(self, ev: MessageSent) -> None:  # noqa: C901, PLR0912, PLR0915 (flat: hot path)
        """A chat message: who owes a reply, and when the session times out."""
        # The hot path (most events are messages): kept flat on purpose.
        if ev.agent_id is not None:
            self._routing.check_agent(ev.agent_id)
        state = self._state
        buyer = state.buyers.get(ev.buyer_id)
        s = buyer.session if buyer is not None else None
        if s is None:
            return  # no open session: a late message after a close changes nothing
        agent = state.agents[s.agent_id]
        threshold = self._busy_threshold
        routing = self._routing
        if agent.status is AgentStatus.SUSPENDED:  # back from its break with other sessions
            routing.forget_coming(s.agent_id)
        if ev.sender == "buyer":
            if not s.buyer_waiting:  # the reply clock starts
                s.buyer_waiting = True
                s.waiting_since = now = state.now
                state.timers.arm(OVERDUE_TIMER, ev.buyer_id, now + self._deadline)
                if self._reassign_after and not s.answered and not s.moved:
                    at = max(now, s.started_at) + self._reassign_after
                    state.timers.arm(UNANSWERED_TIMER, ev.buyer_id, at)
                quiet_since = agent.quiet.pop(ev.buyer_id)
                agent.pending += 1
                for cand in routing.agent_cands.get(s.agent_id, ()):
                    if cand.line.items:  # read at the next estimate: keep it exact
                        cand.slots.owed(s.agent_id, ev.buyer_id, quiet_since)  # now + T
                    else:  # nobody reads it before a line forms: look again then
                        cand.slots.touch(s.agent_id)
                if agent.pending == threshold + 1:
                    self.update_busy(agent)  # may have become busy
            return
        now = state.now
        quiet = agent.quiet
        since = quiet.get(ev.buyer_id)  # None: the buyer was owed a reply
        if since is not None:
            del quiet[ev.buyer_id]
        quiet[ev.buyer_id] = now  # now the newest
        s.last_agent_at = now
        s.answered = True
        if self.stranded:
            self.stranded.pop(ev.buyer_id, None)  # a reply before the move stops it
        state.timers.arm(SESSION_TIMER, ev.buyer_id, now + self._timeout)
        for cand in routing.agent_cands.get(s.agent_id, ()):
            if cand.line.items:  # estimates in line may move
                cand.slots.replied(s.agent_id, ev.buyer_id, since, now)  # it ends later
                routing.mark_dirty(cand)
            else:
                cand.slots.touch(s.agent_id)
        if s.buyer_waiting:  # a reply: the clock stops, its reading goes to the group
            s.buyer_waiting = False
            agent.pending -= 1
            waited = now - s.waiting_since
            s.waiting_since = 0
            group = s.group
            home = routing.cands.get(group) if group is not None else None
            if home is not None:  # None: its group left the shop file since
                home.replies.observe(waited, waited <= self._deadline, now)
            if (exp := state.experiments.running) is not None:
                exp.replied(ev.buyer_id, waited <= self._deadline, now)
            changes = self._effects.changes  # inline other_changed: the hot path
            if changes is not None:
                changes.other = True
            if s.overdue:
                self._answered_overdue(s, agent)
            if agent.pending == threshold:
                self.update_busy(agent)  # may be no longer busy

    def _answered_overdue(self, s: Session, agent: AgentState) -> None:
        """An overdue buyer got its reply: it is overdue no longer."""
        s.overdue = False
        agent.overdue -= 1
        self._count_overdue(s.group, -1)
        if agent.overdue == 0:
            self.update_busy(agent)

    def on_order(self, ev: OrderPlaced) -> None:
        """Credit an order to the agent of the buyer's session or recent contact."""
        state = self._state
        buyer = state.buyers.get(ev.buyer_id)
        if buyer is None:
            return
        if buyer.session is not None:
            agent_id, already = buyer.session.agent_id, buyer.session.converted
            since = buyer.session.opened_at
            buyer.session.converted = True
        elif (
            buyer.last is not None
            and state.now - buyer.last.ended_at < state.config.conversion_window
        ):
            agent_id, already = buyer.last.agent_id, buyer.last.converted
            since = buyer.last.opened_at
            buyer.last.converted = True
        else:
            return  # no session to credit (contract §1.2 order)
        agent = state.agents[agent_id]
        self._effects.agent_changed(agent_id)
        agent.orders += 1
        agent.order_amount += ev.amount or 0.0
        exp = state.experiments.running
        if exp is not None and since >= exp.started_at:  # a chat the experiment counted
            exp.ordered(ev.buyer_id, ev.amount or 0.0, first=not already)
            self._effects.other_changed()
        if not already:
            agent.converted_sessions += 1
            for cand in self._routing.of_agent(agent_id):
                cand.stats.converted()
                cand.rerank_if_prior_drifted()
            self._routing.agent_changed(agent)

    # ------------------------------------------------------------------------- transfers

    def transfer(self, ev: SessionTransferred) -> str:
        """Hand the buyer's session over (or EventRejected before any change); return the
        agent it left, whose queues the caller serves. The buyer's pending question moves
        along."""
        cand, agent_id = self._transfer_target(ev)
        buyer = self._state.buyers[ev.buyer_id]
        closing, opening = CloseReason.TRANSFERRED, AssignReason.TRANSFER
        return self._hand_over(buyer, cand, agent_id, ev.id, closing, opening).agent_id

    def _hand_over(
        self,
        buyer: Buyer,
        cand: Candidate,
        agent_id: str,
        inquiry_id: str,
        closing: CloseReason,
        opening: AssignReason,
        mode: Mode | None = None,
    ) -> Session:
        """The one way a buyer in session changes agents (a transfer, a move): its session
        closes with `closing`, a new one with `agent_id` opens with `opening` (a move's is
        marked `moved`), the question and its clock moving along; the old session."""
        old = buyer.session
        assert old is not None
        self._detach(buyer.id, old)
        self._effects.session_closed(
            self._state.now, old.inquiry_id, buyer.id, old.agent_id, closing
        )
        buyer.session = None
        self.stranded.pop(buyer.id, None)
        new = self.start(buyer, inquiry_id, cand, agent_id, opening, "transfer", mode)
        new.moved = opening is AssignReason.UNANSWERED  # once: never moved again
        new.opened_at = old.opened_at
        self._take_question(buyer, old, new)
        return old

    def _take_question(self, buyer: Buyer, old: Session, new: Session) -> None:
        """A buyer's question, if it waits for a reply, moves from its old session to the
        new one (a transfer, a move), with its clock: its start kept."""
        if not old.buyer_waiting:
            return
        state = self._state
        target = state.agents[new.agent_id]
        new.buyer_waiting = True
        new.waiting_since = old.waiting_since
        del target.quiet[buyer.id]
        target.pending += 1
        if old.overdue:
            new.overdue = True
            target.overdue += 1
            self._count_overdue(new.group, 1)
        else:
            state.timers.arm(OVERDUE_TIMER, buyer.id, new.waiting_since + self._deadline)
        if (at := self.unanswered_at(buyer)) is not None:
            state.timers.arm(UNANSWERED_TIMER, buyer.id, at)
        target.busy = self.is_busy(target)
        self._routing.agent_changed(target)

    def _transfer_target(self, ev: SessionTransferred) -> tuple[Candidate, str]:
        """Where a transfer goes, or EventRejected saying why it cannot."""
        buyer = self._state.buyers.get(ev.buyer_id)
        s = buyer.session if buyer else None
        if s is None:
            raise EventRejected(f"buyer {ev.buyer_id!r} has no open session to transfer")
        if ev.to_agent is not None:
            return self._transfer_to_agent(ev.to_agent, s)
        assert ev.to_group is not None
        cand = self._routing.cands.get(ev.to_group)
        if cand is None:
            raise EventRejected(
                f"to_group {ev.to_group!r} is not a group of shop {self._state.config.id!r}"
            )
        pick = cand.choose(s.agent_id, self._state.experiments.policy_of(ev.buyer_id))
        if pick is None:
            raise EventRejected(f"no agent of group {ev.to_group!r} can take the transfer now")
        return cand, pick[0]

    def _transfer_to_agent(self, agent_id: str, s: Session) -> tuple[Candidate, str]:
        state, routing = self._state, self._routing
        agent = state.agents.get(agent_id)
        if agent is None or agent_id not in routing.configured:
            raise EventRejected(
                f"to_agent {agent_id!r} is not configured in shop {state.config.id!r}"
            )
        if agent_id == s.agent_id:
            raise EventRejected(f"the buyer is already in a session with agent {agent_id!r}")
        cands = routing.of_agent(agent_id)
        if not cands:
            raise EventRejected(f"to_agent {agent_id!r} is listed in no group")
        if agent.status is not AgentStatus.ONLINE:
            raise EventRejected(f"to_agent {agent_id!r} is {agent.status.value}, not online")
        current = routing.candidate(s.cand)
        if current is not None and current.is_member(agent_id):
            return current, agent_id
        return cands[0], agent_id


def moved_id(inquiry_id: str) -> str:
    """The id of the session a move for an unanswered message opens (its outputs' ids
    follow from it): the old one's with `~u1`, or its `~uN` counted up, so every move of a
    buyer has its own; an id that would pass 128 characters is shortened with a hash."""
    base, sep, count = inquiry_id.rpartition("~u")
    moved = f"{base}~u{int(count) + 1}" if sep and count.isdigit() else f"{inquiry_id}~u1"
    if len(moved) <= 128:
        return moved
    return f"{moved[:80]}~{hashlib.sha256(moved.encode()).hexdigest()[:32]}"
