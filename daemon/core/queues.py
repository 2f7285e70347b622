"""Queues of one shop: joining, leaving, serving, announcing (contract §3.1; routing.md, Queues).

`Queues` owns the lines' bookkeeping (the arrival counter that breaks ties) and everything a
line says to its buyers:

- `enqueue`, `unqueue`, `on_leave`: a buyer joins or leaves its candidate's line;
- `publish`: the `queue_update` for one buyer (position and wait for queued / waiting);
- `drain`: serve queued buyers while agents have room, oldest eligible head first;
- `flush`: the periodic `waiting` updates of one candidate (TICK timer);
- `expire`: max_wait reached (EXPIRY timer): overflow to another group, or `expired`;
- `rehome`: after a reload, put a queued buyer back in line (re-matched if its group went).

The lines themselves, and when each one's `waiting` updates are due, are each candidate's
`Line` (daemon/core/line.py); the wait a buyer is told is `daemon/core/estimate.py`, given an
`Outlook` taken here.
"""

from __future__ import annotations

from collections.abc import Iterable

from daemon.core.candidate import Candidate
from daemon.core.effects import Effects
from daemon.core.estimate import EXACT_AHEAD, Outlook, estimate_s, outlook
from daemon.core.model import Buyer, BuyerPhase, QueueEntry, QueueItem, Trigger
from daemon.core.routing import Routing
from daemon.core.sessions import Sessions
from daemon.core.state import ShopState
from daemon.core.timers import EXPIRY_TIMER
from topics.events import AssignReason, BuyerInquired, BuyerLeft, QueueStatus

ETA_SLACK_MS = 5000  # a waiting update is due when the predicted moment of service moves
# by more than this or 10 % of the remaining wait (docs/routing.md, Queue updates)
FLUSH_BATCH = 200  # waiting updates one tick announces; the rest follow FLUSH_GAP_MS later,
FLUSH_GAP_MS = 50  # front of the line first (a long line's burst never stalls the events)


class Queues:
    """The lines of one shop; see the module docstring."""

    __slots__ = ("_effects", "_routing", "_sessions", "_state", "leavers", "seq")

    def __init__(
        self, state: ShopState, effects: Effects, routing: Routing, sessions: Sessions
    ) -> None:
        self._state = state
        self._effects = effects
        self._routing = routing
        self._sessions = sessions
        self.seq = 0  # arrivals so far: the tie-break of equal arrival times, unique per shop
        # the policy lab's hindsight alone (`simulate(leavers=...)`, bench/sim.py section 3;
        # the daemon never sets it, nothing checkpoints it): the inquiries that will leave
        # their line unserved, so that estimates count exactly who ahead stays
        self.leavers: frozenset[str] | None = None

    # ------------------------------------------------------------------ joining, leaving

    def enqueue(self, buyer: Buyer, ev: BuyerInquired, cand: Candidate) -> None:
        """Put the buyer at its place in `cand`'s queue and announce it as `queued`."""
        state = self._state
        buyer.move("queue")
        self.seq += 1
        now = state.now
        entry = QueueEntry(ev.id, cand.key, ev.priority, now, self.seq, now, ev.context)
        buyer.queued = entry
        state.buyers[buyer.id] = buyer
        cand.line.add(entry.item(buyer.id, state.config.queue.priority_aging))
        self.publish(buyer.id, entry, cand, QueueStatus.QUEUED)
        if (exp := state.experiments.running) is not None:
            exp.came(buyer.id, now)
            self._effects.other_changed()
        self.arm_expiry(buyer)
        self._routing.line_changed(cand)

    def unqueue(self, buyer: Buyer, trigger: Trigger | None) -> tuple[QueueEntry, Candidate]:
        """Take the buyer out of its queue; `trigger` None leaves the move to the caller."""
        entry = buyer.queued
        assert entry is not None
        cand = self._routing.candidate(entry.cand)
        assert cand is not None
        state = self._state
        cand.line.remove(entry.item(buyer.id, state.config.queue.priority_aging))
        waited = state.now - entry.arrival
        cand.stats.observe_exit(trigger is None, waited, left=trigger == "leave")
        self._effects.buyer_changed(buyer.id)
        if trigger is not None:
            buyer.move(trigger)
        buyer.queued = None
        self._routing.line_changed(cand)
        return entry, cand

    def on_leave(self, ev: BuyerLeft) -> None:
        """A queued buyer gave up; one in a session (ends by timeout) or unknown: nothing."""
        buyer = self._state.buyers.get(ev.buyer_id)
        if buyer is None or buyer.queued is None:
            return
        entry, cand = self.unqueue(buyer, "leave")
        self.publish(buyer.id, entry, cand, QueueStatus.LEFT)
        self._forget_if_idle(buyer)

    def _forget_if_idle(self, buyer: Buyer) -> None:
        """Drop a buyer that is neither queued nor in a session and has no recent contact."""
        if buyer.phase is BuyerPhase.IDLE and buyer.last is None:
            del self._state.buyers[buyer.id]

    # ------------------------------------------------------------------------ announcing

    def publish(
        self,
        buyer_id: str,
        entry: QueueEntry,
        cand: Candidate,
        status: QueueStatus,
        position: int | None = None,
        estimate: int | None = None,
    ) -> None:
        """Emit the buyer's next `queue_update`; queued / waiting carry position and wait."""
        state = self._state
        now = state.now
        self._effects.buyer_changed(buyer_id)
        entry.updates += 1
        if status in (QueueStatus.QUEUED, QueueStatus.WAITING):
            if not position or estimate is None:
                item = entry.item(buyer_id, state.config.queue.priority_aging)
                position = position or cand.line.position(item)
                if estimate is None:
                    view = self.outlook(cand, EXACT_AHEAD)
                    estimate = estimate_s(cand, position, item, view)
            entry.last_position, entry.last_estimate = position, estimate
            entry.last_eta = now + estimate * 1000
        self._effects.queue_update(
            now, entry.inquiry_id, entry.updates, buyer_id, cand.group, status, position, estimate
        )

    def outlook(self, cand: Candidate, limit: int | None = None) -> Outlook:
        """What the wait estimates of `cand`'s line read now (`limit`: `estimate.outlook`;
        with the lab's `leavers`, every buyer is asked)."""
        state = self._state
        leavers = self.leavers
        q = state.config.queue
        neighbours = self._routing.neighbours[cand.key]
        return outlook(
            cand,
            neighbours,
            state.agents,
            state.buyers,
            state.now,
            q.session_timeout,
            q.avg_handle_time,
            limit if leavers is None else None,
            leavers,
        )

    def flush(self, cand: Candidate) -> None:
        """Announce `waiting` to every buyer in line whose position or predicted time moved."""
        state = self._state
        self._effects.other_changed()
        line = cand.line
        line.flushed(state.now)
        if not line.items:
            return
        view = self.outlook(cand)
        buyers, now = state.buyers, state.now
        announced = 0
        for position, item in enumerate(line.items, start=1):
            entry = buyers[item.buyer_id].queued
            assert entry is not None
            estimate = estimate_s(cand, position, item, view)
            moved = abs(now + estimate * 1000 - entry.last_eta)
            if position != entry.last_position or moved > max(ETA_SLACK_MS, estimate * 100):
                if announced == FLUSH_BATCH:  # the rest at a tick FLUSH_GAP_MS from now
                    self._routing.mark_dirty(cand, within=FLUSH_GAP_MS)
                    return
                self.publish(item.buyer_id, entry, cand, QueueStatus.WAITING, position, estimate)
                announced += 1

    # --------------------------------------------------------------------------- serving

    def drain(self, cands: Iterable[Candidate]) -> None:
        """Serve queued buyers while any of `cands` has both a buyer and an eligible agent;
        first, move there the buyers due to move for an unanswered message (contract §3.6:
        as soon as someone can take them, before the line)."""
        if self._sessions.stranded:  # the lines of the candidates moves free a slot in too
            cands = self._sessions.move_stranded(cands)
        waiting = [c for c in cands if c.line.items]
        while waiting:
            best = _oldest_servable_head(waiting)
            if best is None:
                return
            buyer = self._state.buyers[best.line.items[0].buyer_id]
            pick = best.choose(policy=self._state.experiments.policy_of(buyer.id))
            assert pick is not None
            entry, _ = self.unqueue(buyer, None)
            self.publish(buyer.id, entry, best, QueueStatus.DEQUEUED)
            agent_id, mode = pick
            waited = self._state.now - entry.arrival
            self._sessions.start(
                buyer,
                entry.inquiry_id,
                best,
                agent_id,
                AssignReason.DEQUEUED,
                "dequeue",
                mode,
                waited,
            )

    # ----------------------------------------------------------------------- max_wait

    def expiry_deadline(self, buyer: Buyer) -> int | None:
        """When the queued buyer reaches max_wait, or None."""
        entry = buyer.queued
        max_wait = self._state.config.queue.max_wait
        if entry is None or max_wait <= 0:
            return None
        return entry.entered_at + max_wait

    def arm_expiry(self, buyer: Buyer) -> None:
        """Arm the buyer's max_wait timer if it has one."""
        deadline = self.expiry_deadline(buyer)
        if deadline is not None:
            self._state.timers.arm(EXPIRY_TIMER, buyer.id, deadline)

    def expire(self, buyer: Buyer) -> None:
        """The buyer waited max_wait: move it to the overflow group, or announce `expired`."""
        assert buyer.queued is not None
        routing = self._routing
        cand = routing.candidate(buyer.queued.cand)
        target = routing.cands.get(cand.overflow_to) if cand and cand.overflow_to else None
        if target is None:
            entry, cand = self.unqueue(buyer, "expire")
            self.publish(buyer.id, entry, cand, QueueStatus.EXPIRED)
            self._forget_if_idle(buyer)
            return
        entry, _ = self.unqueue(buyer, "overflow")
        state = self._state
        entry.cand, entry.entered_at = target.key, state.now
        buyer.queued = entry
        target.line.add(entry.item(buyer.id, state.config.queue.priority_aging))
        self.publish(buyer.id, entry, target, QueueStatus.QUEUED)
        self.arm_expiry(buyer)
        routing.line_changed(target)
        self.drain([target])

    # ------------------------------------------------------------------------- reloads

    def rehome(self, buyer_id: str, entry: QueueEntry) -> None:
        """Put a buyer queued before a reload back in line: in its group if it still
        exists, else where its inquiry's context matches now (announced as `queued`)."""
        routing, config = self._routing, self._state.config
        target = routing.candidate(entry.cand) or routing.candidate_for(entry.context)
        if target is None:
            target = routing.cands[config.groups[0].name]
        moved = target.key != entry.cand
        entry.cand = target.key
        target.line.add(entry.item(buyer_id, config.queue.priority_aging))
        if moved:
            self.publish(buyer_id, entry, target, QueueStatus.QUEUED)
        routing.line_changed(target)


def _oldest_servable_head(waiting: list[Candidate]) -> Candidate | None:
    """The candidate whose head buyer comes first among those with an eligible agent."""
    best: Candidate | None = None
    best_head: QueueItem | None = None
    for cand in waiting:
        head = cand.line.head()  # `seq` decides between two heads, never the buyer id:
        if head is not None and cand.has_eligible() and (best_head is None or head < best_head):
            best, best_head = cand, head
    return best
