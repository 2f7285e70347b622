"""When a candidate's next slots free: the index the wait estimate reads (estimate.py).

An online member agent at or over its cap `c` here frees a slot each time one of its
sessions ends — after the first `load − c` ends, which only bring it back to its cap. A
session ends by the timeout at `last agent message + T` if nothing more is said, and one
whose buyer wrote last (the agent owes a reply) at `now + T` at the earliest. So the slot
times of a candidate are, over those agents, their quiet sessions' ends after the first
`load − c` (the agent's `quiet` is oldest first), then the owed ones, all sorted, each at
least `now`.

`SlotIndex` keeps the quiet ends that count in one sorted list (`Ends`) and the owed ones as
a count, so the k-th slot time costs O(log n) whatever the number of open sessions. Whoever
changes an agent's sessions, quiet times, owed replies or status `touch`es it; the index
brings that agent's part up to date when next read, by difference (an agent that leaves its
cap and is back before the next read moves one entry, not all of them).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator, Mapping

from daemon.core.model import AgentState
from topics.events import AgentStatus

Part = tuple[dict[str, int], int, int]  # ({buyer id: quiet since}, owed count, load − cap)
LOAD = 1000  # entries of one of `Ends`' sublists: split above 2·LOAD, merged below LOAD / 2


class Ends:
    """The quiet-since times (epoch ms) of the ends that count, sorted, repeats kept.

    Every chat message at a full agent moves one (`SlotIndex.owed` / `replied`), so this is
    compiled with the index, and holds bare times: a slot time reads nothing else, and which
    of two sessions quiet since the same moment is which does not matter to it (comparing
    (time, buyer id) pairs in a SortedList cost most of a move). The layout is
    sortedcontainers': sorted sublists of LOAD / 2 to 2·LOAD entries (any size when there
    is one), each one's last entry in `_maxes`; with a Fenwick tree of their lengths.
    `add` and `remove` bisect `_maxes` and one sublist and shift at most 2·LOAD entries;
    `ends[i]` walks the tree: O(log n) each (a sublist splits or merges after Θ(LOAD) of
    them, O(n / LOAD) then)."""

    __slots__ = ("_len", "_lists", "_maxes", "_tree")

    def __init__(self) -> None:
        self._lists: list[list[int]] = []
        self._maxes: list[int] = []
        self._tree: list[int] = [0]  # 1-based Fenwick tree over len(_lists[j])
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> int:
        """The entry at `index` (0 ≤ index < len)."""
        if index < 0 or index >= self._len:
            raise IndexError("Ends index out of range")
        tree = self._tree
        size = len(tree) - 1
        pos = 0  # the last sublist whose entries all lie before `index`, 1-based
        step = 1
        while step * 2 <= size:
            step *= 2
        while step:
            nxt = pos + step
            if nxt <= size and tree[nxt] <= index:
                pos = nxt
                index -= tree[nxt]
            step //= 2
        return self._lists[pos][index]

    def add(self, value: int) -> None:
        """Insert `value` at its place."""
        lists, maxes = self._lists, self._maxes
        self._len += 1
        if not maxes:
            lists.append([value])
            maxes.append(value)
            self._rebuild()
            return
        j = bisect_right(maxes, value)
        if j == len(maxes):
            j -= 1
            lists[j].append(value)
            maxes[j] = value
        else:
            insort(lists[j], value)
        if len(lists[j]) > 2 * LOAD:
            self._split(j)
        else:
            self._bump(j, 1)

    def remove(self, value: int) -> None:
        """Take `value` out (ValueError if it is not there)."""
        lists, maxes = self._lists, self._maxes
        j = bisect_left(maxes, value)
        if j == len(maxes):
            raise ValueError(f"{value!r} not in Ends")
        sub = lists[j]
        i = bisect_left(sub, value)
        if sub[i] != value:
            raise ValueError(f"{value!r} not in Ends")
        del sub[i]
        self._len -= 1
        if not sub:
            del lists[j]
            del maxes[j]
            self._rebuild()
            return
        if i == len(sub):
            maxes[j] = sub[-1]
        if len(sub) < LOAD // 2 and len(lists) > 1:
            self._merge(j)
        else:
            self._bump(j, -1)

    def _bump(self, j: int, by: int) -> None:
        tree = self._tree
        size = len(tree) - 1
        k = j + 1
        while k <= size:
            tree[k] += by
            k += k & -k

    def _split(self, j: int) -> None:
        lists, maxes = self._lists, self._maxes
        sub = lists[j]
        half = len(sub) // 2
        lists.insert(j + 1, sub[half:])
        del sub[half:]
        maxes[j] = sub[-1]
        maxes.insert(j + 1, lists[j + 1][-1])
        self._rebuild()

    def _merge(self, j: int) -> None:
        """Join the short sublist `j` with a neighbour (split again if that is too long)."""
        lists, maxes = self._lists, self._maxes
        low = j - 1 if j > 0 else j
        lists[low].extend(lists[low + 1])
        del lists[low + 1]
        maxes[low] = lists[low][-1]
        del maxes[low + 1]
        if len(lists[low]) > 2 * LOAD:
            self._split(low)
        else:
            self._rebuild()

    def _rebuild(self) -> None:
        size = len(self._lists)
        tree = [0] * (size + 1)
        for k in range(1, size + 1):
            tree[k] += len(self._lists[k - 1])
            parent = k + (k & -k)
            if parent <= size:
                tree[parent] += tree[k]
        self._tree = tree


class SlotTimes:
    """The slot times of a candidate at `now`, earliest first (a read-only sequence)."""

    __slots__ = ("_ends", "_now", "_owed", "_timeout")

    def __init__(self, ends: Ends, owed: int, now: int, timeout: int) -> None:
        self._ends, self._owed, self._now, self._timeout = ends, owed, now, timeout

    def __len__(self) -> int:
        return len(self._ends) + self._owed

    def __getitem__(self, i: int) -> int:
        if i < len(self._ends):
            return max(self._ends[i] + self._timeout, self._now)
        return self._now + self._timeout

    def __iter__(self) -> Iterator[int]:
        for i in range(len(self)):
            yield self[i]


class SlotIndex:
    """The quiet ends and owed replies that free a candidate's slots; see the docstring."""

    __slots__ = ("_ends", "_owed", "_parts", "_touched")

    def __init__(self) -> None:
        self._ends = Ends()
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
            self._ends.remove(since)
        held[buyer_id] = now
        self._ends.add(now)

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
        self._ends.remove(since)
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
                ends.remove(since)
        for buyer_id, since in new_held.items():
            if old_held.get(buyer_id) != since:
                ends.add(since)
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
