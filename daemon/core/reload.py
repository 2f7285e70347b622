"""Applying a reloaded shop file to a running shop (CONTRACT 5, Reload).

Sessions and queues are kept. Candidates are rebuilt from the new file and keep what they
learned (round-robin passes, handle time, conversion mean). An agent dropped from a group
keeps its sessions but gets no new buyers there; an agent dropped from the shop keeps its
open sessions until they end. A queued buyer whose group disappeared is re-matched from its
inquiry's context (announced as `queued` in the new group); caps and modes take effect at
once, and a raised cap serves waiting buyers (the caller drains every queue afterwards).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.core.candidate import Candidate, runtime_of, set_runtime
from daemon.core.config import ShopConfig
from daemon.core.model import AgentState, QueueEntry
from daemon.core.queueing import line_changed, publish
from topics.events import QueueStatus

TICK_TIMER = 2  # daemon.core.shop.TICK_TIMER (imported there, not here: no cycle)

if TYPE_CHECKING:
    from daemon.core.shop import ShopEngine


def apply_reload(shop: ShopEngine, config: ShopConfig) -> None:
    """Swap `shop` over to `config`, keeping sessions, queues and learned state."""
    old = {c.key: c for c in shop.all_candidates()}
    runtime = {key: runtime_of(c) for key, c in old.items()}
    queued = [(item[3], shop.buyers[item[3]].queued) for c in old.values() for item in c.queue]
    shop.config = config
    _reconcile_agents(shop, config)
    rebuild(shop, runtime)
    for buyer_id, entry in queued:
        assert entry is not None
        _rehome(shop, buyer_id, entry)
    for buyer in shop.buyers.values():
        shop.arm_buyer_timers(buyer)


def rebuild(shop: ShopEngine, runtime: dict[str, dict[str, object]]) -> None:
    """Rebuild routing structures, give candidates their learned state, re-rank agents."""
    shop.build_routing()
    for cand in shop.all_candidates():
        if cand.key in runtime:
            set_runtime(cand, runtime[cand.key])
        cand.sessions_sum = sum(shop.agents[a].sessions_total for a in cand.caps)
        cand.converted_sum = sum(shop.agents[a].converted_sessions for a in cand.caps)
        cand.index.clear()
        cand.eff_index.clear()
        cand.keys.clear()
        cand.eff_keys.clear()
    for agent in shop.agents.values():
        for cand in shop.agent_cands.get(agent.id, ()):
            cand.refresh(agent)
    for cand in shop.all_candidates():
        if cand.dirty:
            shop.timers.arm(
                TICK_TIMER, cand.key, cand.last_tick + shop.config.queue.update_interval
            )


def _reconcile_agents(shop: ShopEngine, config: ShopConfig) -> None:
    configured = {a.id for a in config.agents}
    for i, conf in enumerate(config.agents):
        state = shop.agents.get(conf.id)
        if state is None:
            shop.agents[conf.id] = AgentState(conf.id, i)
        else:
            state.ordinal = i
    extra = len(config.agents)
    for agent_id in list(shop.agents):
        if agent_id in configured:
            continue
        if shop.agents[agent_id].sessions:
            shop.agents[agent_id].ordinal = extra
            extra += 1
        else:
            del shop.agents[agent_id]


def _rehome(shop: ShopEngine, buyer_id: str, entry: QueueEntry) -> None:
    target: Candidate | None = shop.candidate(entry.cand) or shop.candidate_for(entry.context)
    if target is None:
        target = shop.cands[config_first_group(shop.config)]
    moved = target.key != entry.cand
    entry.cand = target.key
    target.queue.add(target.item(entry, buyer_id))
    if moved:
        publish(shop, buyer_id, entry, target, QueueStatus.QUEUED)
    line_changed(shop, target)


def config_first_group(config: ShopConfig) -> str:
    """Name of the shop's first group (every shop has at least one)."""
    return config.groups[0].name
