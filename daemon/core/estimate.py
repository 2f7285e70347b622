"""The wait announced with every queue update (`queue_update.estimated_wait_s`).

A queued buyer is served when a slot frees in its group, and slots free when sessions end.
Sessions end by the session timeout (CONTRACT 3.2), so the engine knows when each open
session will end if nothing more is said — and roughly how much longer a chat that is still
going will last. The estimate reads those ends instead of assuming sessions end at an
average rate:

    T      = session_timeout
    H      = mean session duration in the candidate (`Candidate.handle_time_ms`)
    end(s) = last agent message + T       (the buyer wrote last: now + T), at least now —
             the earliest the session can end; a chat that goes on ends later, but
             agents also come online early, and the simulator's error figures bear the
             earliest end out
    slots  = for each online member agent at or over its cap, the ends of its sessions
             but the first load − cap (those only bring it back to its cap): each later
             end frees a slot; all sorted, the moments the candidate's next slots free
    stay   = the share of this queue's buyers who stayed until served, of those who left
             the queue lately (`Candidate.observe_exit`: an EWMA, 1 until anyone leaves)
    ahead  = round((k − 1) · stay)          (of the k − 1 buyers ahead, those expected to
                                             stay; for the buyer at 1-based position k)
    need   = ahead + 1 − free slots
    wait   = 0                                           if need ≤ 0
           = slots[need − 1] − now                       if need ≤ len(slots)
           = slots[(need − 1) mod L] + H·⌊(need − 1)/L⌋ − now   beyond (L = len(slots):
                                                         each slot frees again every H)
           = `Candidate.estimate_s` (rate based, at position ahead + 1)
                                                         if no agent is online at its cap

It does not know which buyers ahead will give up, only how many tend to; nor which later
messages will extend a session (errs short), or which freed slot another group sharing the
agent will take (errs short). `fenliu simulate` measures its error against two baselines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from topics.events import AgentStatus

if TYPE_CHECKING:
    from daemon.core.candidate import Candidate
    from daemon.core.shop import ShopEngine


def slot_times(shop: ShopEngine, cand: Candidate) -> list[int]:
    """When the candidate's next slots free (epoch ms, earliest first); see the docstring."""
    now, timeout = shop.now, shop.config.queue.session_timeout
    times: list[int] = []
    for agent_id, cap in cand.caps.items():
        agent = shop.agents.get(agent_id)
        if agent is None or cap is None or agent.status is not AgentStatus.ONLINE:
            continue
        over = len(agent.sessions) - cap
        if over < 0:
            continue
        ends = []
        for buyer_id in agent.sessions:
            session = shop.buyers[buyer_id].session
            assert session is not None
            quiet = now if session.buyer_waiting else session.last_agent_at
            ends.append(max(quiet + timeout, now))
        ends.sort()
        times.extend(ends[over:])
    times.sort()
    return times


def estimate_s(
    shop: ShopEngine, cand: Candidate, position: int, times: list[int] | None = None
) -> int:
    """Seconds until the buyer at `position` is served; `times` from `slot_times` if known."""
    need = cand.ahead(position) + 1 - cand.free_slots
    if need <= 0:
        return 0
    if times is None:
        times = slot_times(shop, cand)
    if not times:
        return cand.estimate_s(cand.ahead(position) + 1, shop.config.queue.avg_handle_time)
    rounds, index = divmod(need - 1, len(times))
    handle = cand.handle_time_ms(shop.config.queue.avg_handle_time)
    return max(0, round((times[index] + rounds * handle - shop.now) / 1000))
