"""What the wait estimate reads of a candidate's capacity (daemon/core/estimate.py), kept as
its member agents change:

- `online`, `busy_slots`, `free_slots`: online members; their open sessions, each counted
  up to the member's cap; their free slots (Σ cap − load; 1 each where queueing does not
  apply). Kept by difference, from each member's part (`counted`), by `agent_changed`.
- `online_weight`: the online capacity (Σ cap of online members, 1 where queueing does not
  apply), and `shared`: the part of each other candidate's online capacity held by agents
  also in this one, by its key (kept by Routing, which sees both: `share`).
- `coming`: the expected slots of offline and suspended members coming online
  (daemon/core/arrivals.py), as of the minute it was computed (`coming_at`), computed again
  the next minute or after `forget_coming`.

Every figure is derived from the agents (rebuilt on restore, never checkpointed).
"""

from __future__ import annotations

from collections.abc import Mapping

from daemon.core.arrivals import MINUTE_MS, Coming, expected_capacity
from daemon.core.model import AgentState
from topics.events import AgentStatus

_NOTHING = (0, 0, 0)  # an agent's (online, busy slots, free slots) when it is not online


class Capacity:
    """One candidate's online and coming capacity; see the module docstring."""

    __slots__ = (
        "busy_slots",
        "coming_at",
        "counted",
        "expected",
        "free_slots",
        "online",
        "online_weight",
        "shared",
    )

    def __init__(self) -> None:
        self.counted: dict[str, tuple[int, int, int]] = {}  # agent id -> its part (_NOTHING)
        self.online = 0
        self.busy_slots = 0
        self.free_slots = 0
        self.online_weight = 0
        self.shared: dict[str, int] = {}
        self.expected: Coming = []  # `coming` as of the minute `coming_at` (-1: none yet)
        self.coming_at = -1

    def agent_changed(self, agent: AgentState, cap: int | None) -> None:
        """Count a member agent (its cap here: `cap`, None where queueing does not apply)
        as it is now."""
        status = agent.status
        if status is AgentStatus.SUSPENDED:
            self.coming_at = -1  # back from its break with these sessions
        if status is not AgentStatus.ONLINE:
            new = _NOTHING
        elif cap is None:
            new = (1, len(agent.sessions), 1)
        else:
            load = len(agent.sessions)
            new = (1, min(load, cap), max(0, cap - load))
        agent_id = agent.id
        old = self.counted.get(agent_id, _NOTHING)
        if new != old:
            if new[0] != old[0]:
                self.online_weight += (new[0] - old[0]) * (1 if cap is None else cap)
            self.online += new[0] - old[0]
            self.busy_slots += new[1] - old[1]
            self.free_slots += new[2] - old[2]
            self.counted[agent_id] = new

    def share(self, other: str, weight: int) -> None:
        """An agent of this candidate and of candidate `other` came online (`weight`: its
        capacity there) or left it (minus that)."""
        self.shared[other] = self.shared.get(other, 0) + weight

    def forget_coming(self) -> None:
        """What a member brings back online changed: compute `coming` again."""
        self.coming_at = -1

    def coming(
        self,
        caps: Mapping[str, int | None],
        agents: Mapping[str, AgentState],
        now: int,
        timeout_ms: int,
    ) -> Coming:
        """Expected slots of the offline and suspended members (`caps`: the members and
        their caps) coming online, computed once a minute, as of the minute's start (so a
        restored shop computes the same), and again after `forget_coming` or a change of a
        suspended member's sessions (`agent_changed`)."""
        minute = now // MINUTE_MS
        if self.coming_at != minute:
            online = AgentStatus.ONLINE
            members = [
                (agent_id, 1 if cap is None else cap)
                for agent_id, cap in caps.items()
                if (agent := agents.get(agent_id)) is not None
                and agent.status is not online
                and agent.observed_since >= 0
            ]
            start = minute * MINUTE_MS
            self.expected = expected_capacity(members, agents, start, timeout_ms) if members else []
            self.coming_at = minute
        return self.expected
