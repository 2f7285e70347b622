"""Queues of one shop: joining, leaving, serving, announcing (CONTRACT 3.1; routing.md, Queues).

Module functions that take the `ShopEngine` as first argument, the way `reload.py` does;
shop.py imports them at module level (this module imports the engine for type checking
only, so there is no cycle). What lives here:

- `enqueue`, `unqueue`, `forget_if_idle`: a buyer joins or leaves its candidate's queue;
- `line_changed`: waiting updates fall due in that queue and the queues sharing its agents;
- `publish`: the `queue_update` for one buyer (position and wait for queued / waiting);
- `drain`: serve queued buyers while agents have room, oldest eligible head first;
- `flush_updates`: the periodic waiting updates of one candidate (TICK timer);
- `expire`: max_wait reached (EXPIRY timer): overflow to another group, or expired.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from daemon.core.estimate import estimate_s, outlook
from daemon.core.model import Buyer, BuyerPhase, QueueEntry, Trigger
from topics.events import AssignReason, BuyerInquired, QueueStatus, QueueUpdate

if TYPE_CHECKING:
    from daemon.core.candidate import Candidate
    from daemon.core.shop import ShopEngine

ETA_SLACK_MS = 5000  # a waiting update is due when the predicted moment of service moves
# by more than this or 10 % of the remaining wait (docs/routing.md, Queue updates)


def enqueue(shop: ShopEngine, buyer: Buyer, ev: BuyerInquired, cand: Candidate) -> None:
    """Put the buyer at its place in `cand`'s queue and announce it as `queued`."""
    buyer.move("queue")
    shop.seq += 1
    now = shop.now
    entry = QueueEntry(ev.id, cand.key, ev.priority, now, shop.seq, now, ev.context)
    buyer.queued = entry
    shop.buyers[buyer.id] = buyer
    cand.queue.add(cand.item(entry, buyer.id))
    publish(shop, buyer.id, entry, cand, QueueStatus.QUEUED)
    shop.arm_buyer_timers(buyer)
    line_changed(shop, cand)


def line_changed(shop: ShopEngine, cand: Candidate) -> None:
    """A buyer joined or left `cand`'s line: its waiting buyers' updates are due, and so
    are those of the lines sharing its agents (their estimates count its older buyers)."""
    shop._mark_dirty(cand)
    for other in shop.neighbours[cand.key]:
        if other.queue:
            shop._mark_dirty(other)


def publish(
    shop: ShopEngine,
    buyer_id: str,
    entry: QueueEntry,
    cand: Candidate,
    status: QueueStatus,
    position: int | None = None,
    estimate: int | None = None,
) -> None:
    """Emit the buyer's next `queue_update`; queued / waiting carry position and wait."""
    shop._touch(buyer_id)
    entry.updates += 1
    if status in (QueueStatus.QUEUED, QueueStatus.WAITING):
        position = position or cand.position(entry, buyer_id)
        if estimate is None:
            estimate = estimate_s(shop, cand, position, cand.item(entry, buyer_id))
        entry.last_position, entry.last_estimate = position, estimate
        entry.last_eta = shop.now + estimate * 1000
    shop._emit(
        QueueUpdate(
            id=f"q:{entry.inquiry_id}:{entry.updates}",
            shop_id=shop.config.id,
            ts=shop.now,
            inquiry_id=entry.inquiry_id,
            buyer_id=buyer_id,
            group=cand.group,
            status=status,
            position=position,
            estimated_wait_s=estimate,
        )
    )


def unqueue(
    shop: ShopEngine, buyer: Buyer, trigger: Trigger | None
) -> tuple[QueueEntry, Candidate]:
    """Take the buyer out of its queue; `trigger` None leaves the move to the caller."""
    entry = buyer.queued
    assert entry is not None
    cand = shop.candidate(entry.cand)
    assert cand is not None
    cand.queue.remove(cand.item(entry, buyer.id))
    cand.observe_exit(served=trigger is None)
    shop._touch(buyer.id)
    if trigger is not None:
        buyer.move(trigger)
    buyer.queued = None
    line_changed(shop, cand)
    return entry, cand


def forget_if_idle(shop: ShopEngine, buyer: Buyer) -> None:
    """Drop a buyer that is neither queued nor in a session and has no recent contact."""
    if buyer.phase is BuyerPhase.IDLE and buyer.last is None:
        del shop.buyers[buyer.id]


def drain(shop: ShopEngine, cands: Iterable[Candidate]) -> None:
    """Serve queued buyers while any of `cands` has both a buyer and an eligible agent."""
    waiting = [c for c in cands if c.queue]
    while waiting:
        best: Candidate | None = None
        for cand in waiting:
            eligible = cand.queue and cand.has_eligible()
            if eligible and (best is None or cand.queue[0][:3] < best.queue[0][:3]):
                best = cand
        if best is None:
            return
        pick = best.choose()
        assert pick is not None
        buyer = shop.buyers[best.queue[0][3]]
        entry, _ = unqueue(shop, buyer, None)
        publish(shop, buyer.id, entry, best, QueueStatus.DEQUEUED)
        agent_id, mode = pick
        waited = shop.now - entry.arrival
        shop._start_session(
            buyer,
            entry.inquiry_id,
            best,
            agent_id,
            AssignReason.DEQUEUED,
            "dequeue",
            mode,
            waited,
        )


def flush_updates(shop: ShopEngine, cand: Candidate) -> None:
    """Announce `waiting` to every buyer in line whose position or predicted time moved."""
    if shop.changes is not None:
        shop.changes.other = True
    cand.dirty = False
    cand.last_tick = shop.now
    view = outlook(shop, cand) if cand.queue else None
    for position, item in enumerate(cand.queue, start=1):
        entry = shop.buyers[item[3]].queued
        assert entry is not None
        estimate = estimate_s(shop, cand, position, item, view)
        moved = abs(shop.now + estimate * 1000 - entry.last_eta)
        if position != entry.last_position or moved > max(ETA_SLACK_MS, estimate * 100):
            publish(shop, item[3], entry, cand, QueueStatus.WAITING, position, estimate)


def expire(shop: ShopEngine, buyer: Buyer) -> None:
    """The buyer waited max_wait: move it to the overflow group, or announce `expired`."""
    assert buyer.queued is not None
    cand = shop.candidate(buyer.queued.cand)
    target = shop.cands.get(cand.overflow_to) if cand and cand.overflow_to else None
    if target is None:
        entry, cand = unqueue(shop, buyer, "expire")
        publish(shop, buyer.id, entry, cand, QueueStatus.EXPIRED)
        forget_if_idle(shop, buyer)
        return
    entry, _ = unqueue(shop, buyer, "overflow")
    entry.cand, entry.entered_at = target.key, shop.now
    buyer.queued = entry
    target.queue.add(target.item(entry, buyer.id))
    publish(shop, buyer.id, entry, target, QueueStatus.QUEUED)
    shop.arm_buyer_timers(buyer)
    line_changed(shop, target)
    drain(shop, [target])
