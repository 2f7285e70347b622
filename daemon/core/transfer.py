"""Session transfers (CONTRACT 1.2 `transfer`; docs/routing.md, Transfers).

Module functions that take the `ShopEngine` as first argument, the way `reload.py` does;
shop.py imports this module inside its transfer handler, since this one imports the
engine's `EventRejected`. What lives here:

- `transfer_target`: where a transfer goes (a named agent, or the pick of a group among
  agents other than the current one), or `EventRejected` saying why not, before any change;
- `on_transfer`: close the session as `transferred`, open one with the target (the buyer's
  pending question moves along), then serve the old agent's queues.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.core.queueing import drain
from daemon.core.shop import EventRejected
from topics.events import AgentStatus, AssignReason, CloseReason

if TYPE_CHECKING:
    from daemon.core.candidate import Candidate
    from daemon.core.model import Session
    from daemon.core.shop import ShopEngine
    from topics.events import SessionTransferred


def transfer_target(shop: ShopEngine, ev: SessionTransferred) -> tuple[Candidate, str]:
    """Where a transfer goes, or EventRejected saying why it cannot."""
    buyer = shop.buyers.get(ev.buyer_id)
    s = buyer.session if buyer else None
    if s is None:
        raise EventRejected(f"buyer {ev.buyer_id!r} has no open session to transfer")
    if ev.to_agent is not None:
        return _transfer_to_agent(shop, ev.to_agent, s)
    assert ev.to_group is not None
    cand = shop.cands.get(ev.to_group)
    if cand is None:
        raise EventRejected(f"to_group {ev.to_group!r} is not a group of shop {shop.config.id!r}")
    pick = cand.choose(exclude=s.agent_id)
    if pick is None:
        raise EventRejected(f"no agent of group {ev.to_group!r} can take the transfer now")
    return cand, pick[0]


def _transfer_to_agent(shop: ShopEngine, agent_id: str, s: Session) -> tuple[Candidate, str]:
    agent = shop.agents.get(agent_id)
    if agent is None or agent_id not in shop.configured_agents:
        raise EventRejected(f"to_agent {agent_id!r} is not configured in shop {shop.config.id!r}")
    if agent_id == s.agent_id:
        raise EventRejected(f"the buyer is already in a session with agent {agent_id!r}")
    cands = shop.agent_cands.get(agent_id)
    if not cands:
        raise EventRejected(f"to_agent {agent_id!r} is listed in no group")
    if agent.status is not AgentStatus.ONLINE:
        raise EventRejected(f"to_agent {agent_id!r} is {agent.status.value}, not online")
    current = shop.candidate(s.cand)
    if current is not None and current.is_member(agent_id):
        return current, agent_id
    return cands[0], agent_id


def on_transfer(shop: ShopEngine, ev: SessionTransferred) -> None:
    """Apply a transfer (rejected before any change when `transfer_target` refuses)."""
    cand, agent_id = transfer_target(shop, ev)
    buyer = shop.buyers[ev.buyer_id]
    old = buyer.session
    assert old is not None
    shop._detach(buyer.id, old)
    shop._emit_closed(buyer.id, old, CloseReason.TRANSFERRED)
    buyer.session = None
    shop._start_session(buyer, ev.id, cand, agent_id, AssignReason.TRANSFER, "transfer")
    new = buyer.session
    assert new is not None
    if old.buyer_waiting:
        new.buyer_waiting = True
        del shop.agents[agent_id].quiet[buyer.id]
        shop.agents[agent_id].pending += 1
        shop._agent_changed(shop.agents[agent_id])
    drain(shop, shop.agent_cands.get(old.agent_id, ()))
