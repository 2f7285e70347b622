"""The inquiry rules of contract §3, as a table read top to bottom.

A `buyer_inquiry` goes through `INQUIRY_RULES` in order; the first rule that takes the buyer
decides, and the rest are not asked. A rule returns False without changing anything when it
does not apply, so a rejection by a later rule leaves the shop as it was. To add a rule,
write a function of this shape and put it at its place in the table (docs/architecture.md,
Adding a rule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from daemon.core.effects import Effects
from daemon.core.errors import EventRejected
from daemon.core.model import Buyer
from daemon.core.queues import Queues
from daemon.core.routing import Routing
from daemon.core.sessions import Sessions
from daemon.core.state import ShopState
from topics.events import AgentStatus, AssignReason, BuyerInquired, QueueStatus


@dataclass(frozen=True, slots=True)
class Parts:
    """The parts of one shop a rule may use."""

    state: ShopState
    effects: Effects
    routing: Routing
    sessions: Sessions
    queues: Queues


Rule = Callable[[Parts, Buyer, BuyerInquired], bool]


def active_session(p: Parts, buyer: Buyer, ev: BuyerInquired) -> bool:
    """1. The buyer has an open session: `assignment` to the same agent, nothing else."""
    s = buyer.session
    if s is None:
        return False
    p.effects.assignment(
        p.state.now, ev.id, buyer.id, s.agent_id, s.group, AssignReason.ACTIVE_SESSION
    )
    return True


def already_queued(p: Parts, buyer: Buyer, ev: BuyerInquired) -> bool:
    """The buyer is in line already: a fresh `waiting` update, its place kept."""
    if buyer.queued is None:
        return False
    cand = p.routing.candidate(buyer.queued.cand)
    assert cand is not None
    p.queues.publish(buyer.id, buyer.queued, cand, QueueStatus.WAITING)
    return True


def repeat_entry(p: Parts, buyer: Buyer, ev: BuyerInquired) -> bool:
    """2. Back within `repeat_entry_window` where queueing applies (contract §3.5): the
    previous agent if online, else the first free agent of its group, else the line."""
    last = buyer.last
    window = p.state.config.queue.repeat_entry_window
    if last is None or window <= 0 or p.state.now - last.ended_at >= window:
        return False
    cand = p.routing.candidate(last.cand)
    if cand is None:
        return False
    member = cand.is_member(last.agent_id)
    if not (cand.caps[last.agent_id] is not None if member else cand.queueing):
        return False  # repeat entry only where queueing applies (contract §3.5)
    prev = p.state.agents.get(last.agent_id)
    reason = AssignReason.REPEAT_ENTRY
    if prev is not None and prev.status is AgentStatus.ONLINE and member:
        p.sessions.start(buyer, ev.id, cand, prev.id, reason, "route")
        return True
    # the fallback is the previous agent's own group, even after a session in the pool
    group = p.routing.cands.get(cand.member_groups[last.agent_id]) if member else None
    fallback = group or cand
    policy = p.state.experiments.policy_of(buyer.id)
    silent = _silent(p, buyer)
    if (pick := fallback.choose(silent, policy)) is not None:
        p.sessions.start(buyer, ev.id, fallback, pick[0], reason, "route")
    elif silent is not None and fallback.choose(None, policy) is not None:
        return False  # only the agent who left it unanswered is free: not repeat entry
    else:
        p.queues.enqueue(buyer, ev, fallback)
    return True


def _silent(p: Parts, buyer: Buyer) -> str | None:
    """The agent who left the buyer's first message unanswered within sticky_window
    (contract §3.6: repeat entry does not lead back to it), or None."""
    silent = buyer.silent
    if silent is None or p.state.now - silent[1] >= p.state.config.sticky_window:
        return None
    return silent[0]


def sticky(p: Parts, buyer: Buyer, ev: BuyerInquired) -> bool:
    """3. Sticky recent contact (contract §3.3): the last agent, if it could take a buyer."""
    last = buyer.last
    window = p.state.config.sticky_window
    if last is None or window <= 0 or p.state.now - last.ended_at >= window:
        return False
    cand = p.routing.candidate(last.cand)
    agent = p.state.agents.get(last.agent_id)
    if cand is None or agent is None or not cand.is_eligible(agent):
        return False
    p.sessions.start(buyer, ev.id, cand, agent.id, AssignReason.STICKY, "route")
    return True


def route(p: Parts, buyer: Buyer, ev: BuyerInquired) -> bool:
    """4–6. Group matching, then the candidate's mode picks an agent, else the line."""
    cand = p.routing.candidate_for(ev.context)
    if cand is None:
        raise EventRejected(
            f"no group of shop {p.state.config.id!r} matches this inquiry's context and no "
            "group has accept_unmatched = true"
        )
    pick = cand.choose(policy=p.state.experiments.policy_of(buyer.id))
    if pick is None:
        p.queues.enqueue(buyer, ev, cand)
    else:
        agent_id, mode = pick
        p.sessions.start(buyer, ev.id, cand, agent_id, AssignReason.ROUTED, "route", mode)
    return True


INQUIRY_RULES: tuple[Rule, ...] = (
    active_session,
    already_queued,
    repeat_entry,
    sticky,
    route,  # always decides (or rejects): the last rule
)


def inquire(p: Parts, ev: BuyerInquired) -> None:
    """Apply a `buyer_inquiry`: the first rule of `INQUIRY_RULES` that takes the buyer."""
    buyer = p.state.buyers.get(ev.buyer_id) or Buyer(ev.buyer_id)
    for rule in INQUIRY_RULES:
        if rule(p, buyer, ev):
            return
