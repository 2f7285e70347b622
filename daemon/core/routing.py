"""Where a buyer can go: a shop's candidates, the match index, and who may take a buyer now.

`Routing` owns the candidates built from the shop file (one per group, plus the pool of the
groups with `accept_unmatched` when there are several), which agents sit in which candidates,
which candidates share agents, and the index of contract §3 rule 4 (group matching by crowd,
item, intent, order status). Each candidate keeps its own sorted index of eligible agents
(`daemon/core/candidate.py`), so choosing an agent is O(log n).

Whenever anything about an agent changes, `agent_changed` re-ranks it in its candidates; a
candidate with buyers in line is then marked for a `waiting` update (`mark_dirty`, by its
line's schedule: `Line.mark`), which the shop's TICK timer delivers every
`queue.update_interval`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from daemon.core.candidate import Candidate, build_candidates, set_runtime
from daemon.core.effects import Effects
from daemon.core.errors import EventRejected
from daemon.core.model import AgentState
from daemon.core.state import ShopState
from daemon.core.timers import TICK_TIMER
from topics.events import AgentStatus, InquiryContext


class Routing:
    """Candidates of one shop and what indexes them; see the module docstring."""

    __slots__ = (
        "_effects",
        "_match",
        "_online",
        "_oracle",
        "_state",
        "agent_cands",
        "cands",
        "configured",
        "neighbours",
        "pool",
    )

    def __init__(
        self, state: ShopState, effects: Effects, oracle: Mapping[str, float] | None = None
    ) -> None:
        self._state = state
        self._oracle = dict(oracle) if oracle is not None else None  # the lab's (engine.py)
        self._effects = effects
        self.cands: dict[str, Candidate] = {}  # by group name
        self.pool: Candidate | None = None
        self.agent_cands: dict[str, list[Candidate]] = {}
        self.neighbours: dict[str, list[Candidate]] = {}  # candidates sharing an agent
        self.configured: frozenset[str] = frozenset()  # agent ids in the shop file
        self._match: list[dict[str, int]] = []
        self._online: set[str] = set()  # member agents counted online in the shares

    # --------------------------------------------------------------------------- building

    def build(self) -> None:
        """(Re)build candidates, the match index and every agent's place in them."""
        state = self._state
        config = state.config
        self.cands, self.pool = build_candidates(config, state.agents, self._oracle)
        self.configured = frozenset(a.id for a in config.agents)
        self.agent_cands = {}
        for cand in self.all():
            for agent_id in cand.caps:
                self.agent_cands.setdefault(agent_id, []).append(cand)
        self.neighbours = {
            cand.key: list(
                {o.key: o for a in cand.caps for o in self.agent_cands[a] if o is not cand}.values()
            )
            for cand in self.all()
        }
        self._online = set()
        self._match = [{}, {}, {}, {}]
        for i, group in enumerate(config.groups):
            m = group.match
            for dim, values in enumerate((m.crowd, m.items, m.intents, m.order_status)):
                for value in values:
                    self._match[dim].setdefault(value, i)
        for agent in state.agents.values():
            self.agent_changed(agent)

    def rebuild(self, learned: dict[str, dict[str, object]]) -> None:
        """Build anew, give candidates what they had learned (by key), re-rank every agent."""
        self.build()
        agents = self._state.agents
        for cand in self.all():
            if cand.key in learned:
                set_runtime(cand, learned[cand.key])
            cand.stats.recount(
                sum(agents[a].sessions_total for a in cand.caps),
                sum(agents[a].converted_sessions for a in cand.caps),
            )
            for ranking in cand.rankings:
                ranking.index.clear()
        for agent in agents.values():
            for cand in self.of_agent(agent.id):
                cand.refresh(agent)
        interval = self._state.config.queue.update_interval
        for cand in self.all():
            due = cand.line.due(interval)
            if due is not None:
                self._state.timers.arm(TICK_TIMER, cand.key, due)

    # --------------------------------------------------------------------------- looking up

    def all(self) -> list[Candidate]:
        """Every group's candidate, then the pool when it is not a single group."""
        cands = list(self.cands.values())
        if self.pool is not None and self.pool.key not in self.cands:
            cands.append(self.pool)
        return cands

    def candidate(self, key: str) -> Candidate | None:
        """A candidate by key (group name, or "" for a pool of several groups)."""
        if self.pool is not None and key == self.pool.key:
            return self.pool
        return self.cands.get(key)

    def of_agent(self, agent_id: str) -> Sequence[Candidate]:
        """The candidates the agent is a member of."""
        return self.agent_cands.get(agent_id, ())

    def candidate_for(self, ctx: InquiryContext) -> Candidate | None:
        """Group matching (contract §3 rule 4): crowd, item, intent, order status, pool."""
        dims = (ctx.crowd, (ctx.item_id,), (ctx.intent,), (ctx.order_status,))
        for index, values in zip(self._match, dims, strict=True):
            found = [index[v] for v in values if v is not None and v in index]
            if found:
                return self.cands[self._state.config.groups[min(found)].name]
        return self.pool

    def check_agent(self, agent_id: str | None) -> None:
        """EventRejected unless `agent_id` is None or configured in the shop."""
        if agent_id is not None and agent_id not in self.configured:
            raise EventRejected(
                f"agent_id {agent_id!r} is not configured in shop {self._state.config.id!r}"
            )

    # --------------------------------------------------------------------------- changes

    def agent_changed(self, agent: AgentState) -> None:
        """Re-rank the agent everywhere it is a member; lines it serves get an update."""
        changes = self._effects.changes  # inline: this runs for every session start and end
        if changes is not None:
            changes.agents.add(agent.id)
        if (agent.status is AgentStatus.ONLINE) is not (agent.id in self._online):
            self._online_changed(agent.id)
        for cand in self.agent_cands.get(agent.id, ()):
            cand.refresh(agent)
            if cand.line.items:
                self.mark_dirty(cand)

    def busy_changed(self, agent: AgentState) -> None:
        """The agent began or stopped owing replies past the busy threshold (a chat message:
        nothing else about it changed, so only the ranks that read busyness move)."""
        changes = self._effects.changes
        if changes is not None:
            changes.agents.add(agent.id)
        for cand in self.agent_cands.get(agent.id, ()):
            cand.rerank_busy(agent)
            if cand.line.items:
                self.mark_dirty(cand)

    def forget_coming(self, agent_id: str) -> None:
        """What the agent brings back from a break changed: the expected arrivals of its
        candidates (`Capacity.coming`, cached for the minute) are computed again."""
        for cand in self.agent_cands.get(agent_id, ()):
            cand.capacity.forget_coming()

    def _online_changed(self, agent_id: str) -> None:
        """The agent came online or left it: its weight in the part of each of its
        candidates' online capacity that its other candidates share moves."""
        sign = -1 if agent_id in self._online else 1
        self._online.symmetric_difference_update((agent_id,))
        cands = self.agent_cands.get(agent_id, ())
        for rival in cands:
            weight = sign * rival.weight(agent_id)
            for cand in cands:
                if cand is not rival:
                    cand.capacity.share(rival.key, weight)

    def mark_dirty(self, cand: Candidate, within: int | None = None) -> None:
        """The candidate's line needs a `waiting` update at its next tick (`Line.mark`;
        `within`: that long from now)."""
        changes = self._effects.changes
        if changes is not None:
            changes.other = True
        state = self._state
        due = cand.line.mark(state.now, state.config.queue.update_interval, within)
        if due is not None:
            state.timers.arm(TICK_TIMER, cand.key, due)

    def line_changed(self, cand: Candidate) -> None:
        """A buyer joined or left `cand`'s line: its waiting buyers' updates are due, and so
        are those of the lines sharing its agents (their estimates count its older buyers)."""
        self.mark_dirty(cand)
        for other in self.neighbours[cand.key]:
            if other.line.items:
                self.mark_dirty(other)

    def tick_deadline(self, key: str) -> int | None:
        """When the candidate's next `waiting` update is due, or None if none is."""
        cand = self.candidate(key)
        return None if cand is None else cand.line.due(self._state.config.queue.update_interval)
