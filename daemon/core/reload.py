"""Applying a reloaded shop file to a running shop (contract §5, Reload): the agents' side.

Sessions and queues are kept (`ShopEngine.reconfigure` rebuilds the candidates, gives them
back what they learned and puts queued buyers back in line with `Queues.rehome`). An agent
dropped from a group keeps its sessions but gets no new buyers there; an agent dropped from
the shop keeps its open sessions until they end, and is forgotten once it has none. Caps and
modes take effect at once, and a raised cap serves waiting buyers.
"""

from __future__ import annotations

from daemon.core.config import ShopConfig
from daemon.core.model import AgentState


def reconcile_agents(agents: dict[str, AgentState], config: ShopConfig) -> None:
    """Bring the roster in line with `config`: new agents added (offline), file order as
    ordinals, dropped agents kept (after the others) only while they have sessions."""
    configured = {a.id for a in config.agents}
    for i, conf in enumerate(config.agents):
        state = agents.get(conf.id)
        if state is None:
            agents[conf.id] = AgentState(conf.id, i)
        else:
            state.ordinal = i
    extra = len(config.agents)
    for agent_id in list(agents):
        if agent_id in configured:
            continue
        if agents[agent_id].sessions:
            agents[agent_id].ordinal = extra
            extra += 1
        else:
            del agents[agent_id]
