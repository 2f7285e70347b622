"""When a candidate's next slots free: the index the wait estimate reads (estimate.py).

An online member agent at or over its cap `c` here frees a slot each time one of its
sessions ends — after the first `load − c` ends, which only bring it back to its cap. A
session ends by the timeout at `last agent message + T` if nothing more is said, and one
whose buyer wrote last (the agent owes a reply) at `now + T` at the earliest. So the slot
times of a candidate are, over those agents, their quiet sessions' ends after the first
`load − c` (the agent's `quiet` is oldest first), then the owed ones, all sorted, each at
least `now`.

`SlotIndex` keeps the quiet ends that count in one sorted list and the owed ones as a count,
so the k-th slot time costs O(log n) whatever the number of open sessions. Whoever changes
an agent's sessions, quiet times, owed replies or status `touch`es it; the index brings that
agent's part up to date when next read, by difference (an agent that leaves its cap and is
back before the next read moves one entry, not all of them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from sortedcontainers import SortedList

from daemon.core.model import AgentState
from topics.events import AgentStatus

Part = tuple[dict[str, int], int, int]  # ({buyer id: quiet since}, owed count, load − cap)


class SlotTimes:
    """The slot times of a candidate at `now`, earliest first (a read-only sequence)."""

    __slots__ = ("_ends", "_now", "_owed", "_timeout")

    def __init__(
        self, ends: SortedList[tuple[int, str]], owed: int, now: int, timeout: int
    ) -> None:
        self._ends, self._owed, self._now, self._timeout = ends, owed, now, timeout

    def __len__(self) -> int:
        return len(self._ends) + self._owed

    def __getitem__(self, i: int) -> int:
        if i < len(self._ends):
            return max(self._ends[i][0] + self._timeout, self._now)
        return self._now + self._timeout

    def __iter__(self) -> Iterator[int]:
        for i in range(len(self)):
            yield self[i]


class SlotIndex:
    """The quiet ends and owed replies that free a candidate's slots; see the docstring."""

    __slots__ = ("_ends", "_owed", "_parts", "_touched")

    def __init__(self) -> None:
        self._ends: SortedList[tuple[int, str]] = SortedList()  # (quiet since, buyer id)
        self._owed = 0
        self._parts: dict[str, Part] = {}  # agent id -> what it holds in the index now
        self._touched: set[str] = set()

    def touch(self, agent_id: str) -> None:
        """Something about the agent's sessions or status changed: look again when read."""
        self._touched.add(agent_id)

    # A chat message changes no agent's load, so where the agent holds all its sessions
    # (load = cap: the usual case) it moves one entry; otherwise it is looked at again.

    def replied(self, agent_id: str, buyer_id: str, since: int | None, now: int) -> None:
        """The agent wrote to `buyer_id`, quiet since `since` (None: the buyer was owed)."""
        part = self._parts.get(agent_id)
        if part is None or agent_id in self._touched:
            return  # holds nothing (below its cap or offline), or is looked at again anyway
        held, owed, over = part
        if over:
            self._touched.add(agent_id)
            return
        if since is None:
            self._parts[agent_id] = (held, owed - 1, over)
            self._owed -= 1
        else:
            self._ends.remove((since, buyer_id))
        held[buyer_id] = now
        self._ends.add((now, buyer_id))

    def owed(self, agent_id: str, buyer_id: str, since: int) -> None:
        """The buyer, quiet since `since`, wrote: the agent owes a reply."""
        part = self._parts.get(agent_id)
        if part is None or agent_id in self._touched:
            return
        held, owed, over = part
        if over:
            self._touched.add(agent_id)
            return
        del held[buyer_id]
        self._ends.remove((since, buyer_id))
        self._parts[agent_id] = (held, owed + 1, over)
        self._owed += 1

    def times(
        self,
        caps: Mapping[str, int | None],
        agents: Mapping[str, AgentState],
        now: int,
        timeout: int,
    ) -> SlotTimes:
        """The slot times now (`caps`: the candidate's members and their caps here)."""
        if self._touched:
            for agent_id in self._touched:
                self._update(agent_id, _part(caps.get(agent_id), agents.get(agent_id)))
            self._touched.clear()
        return SlotTimes(self._ends, self._owed, now, timeout)

    def _update(self, agent_id: str, new: Part | None) -> None:
        old_held, old_owed, _ = self._parts.get(agent_id) or _NONE
        new_held, new_owed, _ = new or _NONE
        ends = self._ends
        for buyer_id, since in old_held.items():
            if new_held.get(buyer_id) != since:
                ends.remove((since, buyer_id))
        for buyer_id, since in new_held.items():
            if old_held.get(buyer_id) != since:
                ends.add((since, buyer_id))
        self._owed += new_owed - old_owed
        if new is None:
            self._parts.pop(agent_id, None)
        else:
            self._parts[agent_id] = new


_NONE: Part = ({}, 0, 0)


def _part(cap: int | None, agent: AgentState | None) -> Part | None:
    """What the agent holds in the index of a candidate where its cap is `cap`, or None."""
    if cap is None or agent is None or agent.status is not AgentStatus.ONLINE:
        return None
    over = len(agent.sessions) - cap
    if over < 0:
        return None
    if over == 0:
        return dict(agent.quiet), agent.pending, 0
    quiet = list(agent.quiet.items())
    if over <= len(quiet):
        return dict(quiet[over:]), agent.pending, over
    return {}, agent.pending - (over - len(quiet)), over
