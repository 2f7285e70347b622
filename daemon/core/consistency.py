"""The invariants a shop's state must satisfy before it is served (checked on every restore).

A restored shop is rows written by checkpoints: agents (with their sets of open sessions)
and buyers (with their phase, session and queue entry). They must tell one story:

- a buyer in session has a session and no queue entry, with an agent the shop configures,
  and is in that agent's set of sessions;
- every buyer in an agent's set of sessions is in session with that agent;
- a queued buyer has a queue entry and no session, and is in its candidate's queue; every
  buyer in a queue is queued there;
- an idle buyer has neither a session nor a queue entry.

`consistency_problems` lists every violation as a sentence (empty: consistent). The daemon
quarantines a shop that has any (daemon.service.checkpoint), rather than serve it and fail later.
"""

from __future__ import annotations

from daemon.core.model import Buyer, BuyerPhase
from daemon.core.shop import ShopEngine


def consistency_problems(shop: ShopEngine) -> list[str]:
    """Every violated invariant of the module docstring, as a sentence."""
    problems: list[str] = []
    for buyer in shop.buyers.values():
        problem = _buyer_problem(shop, buyer)
        if problem is not None:
            problems.append(f"buyer {buyer.id!r} {problem}")
    for agent in shop.agents.values():
        for buyer_id in agent.sessions:
            other = shop.buyers.get(buyer_id)
            if other is None or other.session is None or other.session.agent_id != agent.id:
                problems.append(
                    f"agent {agent.id!r} lists a session with {buyer_id!r}, "
                    "who is not in session with it"
                )
    for cand in shop.all_candidates():
        for item in cand.line.items:
            other = shop.buyers.get(item.buyer_id)
            if other is None or other.queued is None or other.queued.cand != cand.key:
                problems.append(
                    f"queue {cand.key!r} holds {item.buyer_id!r}, who is not queued there"
                )
    return problems


def _buyer_problem(shop: ShopEngine, buyer: Buyer) -> str | None:
    """What is wrong with one buyer's row against the agents and queues, if anything."""
    session, entry = buyer.session, buyer.queued
    if buyer.phase is BuyerPhase.IN_SESSION:
        if session is None or entry is not None:
            return "is in session without exactly a session"
        agent = shop.agents.get(session.agent_id)
        if agent is None or buyer.id not in agent.sessions:
            return f"is in session with {session.agent_id!r}, which does not list the session"
    elif buyer.phase is BuyerPhase.QUEUED:
        if entry is None or session is not None:
            return "is queued without exactly a queue entry"
        cand = shop.candidate(entry.cand)
        aging = shop.config.queue.priority_aging
        if cand is None or entry.item(buyer.id, aging) not in cand.line.items:
            return f"is queued but not in queue {entry.cand!r}"
    elif session is not None or entry is not None:
        return "is idle but has a session or queue entry"
    return None
