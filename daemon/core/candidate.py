"""A candidate: a group (or the pool of unmatched-accepting groups) with its live indexes.

A candidate keeps its identity and configuration (members, caps, mode) and holds parts that
each own their state and change it only through their own methods:

- `rankings`: its eligible agents in the order its mode picks them (`AgentIndex`, below),
  one ranking per policy it serves (its own mode, an experiment arm's, contract §3.7), with
  `stride` the weighted round robin's passes (`Stride`);
- `line` (daemon/core/line.py): its queued buyers, and when their `waiting` updates are due;
- `stats` (daemon/core/stats.py): what it learned (the conversion prior, the handle time,
  who stays in line and for how long);
- `replies` (daemon/core/replies.py): its group's reply figures (contract §3.6);
- `capacity` (daemon/core/capacity.py) and `slots` (daemon/core/slots.py): what the wait
  estimate reads of its online and coming capacity, and when its next slots free.

Each candidate keeps, for its eligible agents only, an index whose first entry is the
agent its mode picks next, so choosing an agent costs O(log n) and never scans the group
(contract §3 rule 5). The index is a heap of rank keys with lazy deletion: `keys` holds each
eligible agent's live key, and a heap entry that is not that very tuple is stale, skipped
when it comes to the top and dropped when stale entries outnumber live ones (a session start
or end moves an agent with one C-level push instead of a sorted-list remove and insert).
The keys, by mode:

- `average`    (shift assignments, last assigned at, file order)
- `weighted`   (virtual pass, file order) — smooth weighted round robin in its O(log n)
               stride form: the chosen agent's pass advances by 1/weight, an agent that
               becomes eligible again starts no earlier than the group's virtual time (the
               least pass among the eligible agents at the last choice), so shares follow
               weights without bursts.
- `efficiency` (busy, load / weight, last assigned at, file order), busy being the agent's
               flag (contract §3.4, decided by `Sessions.is_busy`)
- `conversion` (busy, (load + 1) / score, last assigned at, file order), where
               score = weight × level factor × (rate / mean) ** strength exponent (low 0.5,
               mid 2, high 6) and rate = the latest `agent_stats` figure (the shop's long
               history), else the agent's observed rate shrunk toward the candidate's mean
               under a Beta prior (empirical Bayes): (conv + M·mean) / (sessions + M),
               M = the prior's strength by the method of moments over the members' observed
               counts (`current_strength`), within [MIN_STRENGTH, MAX_STRENGTH]. The mean and
               M are re-read when either moves by more than PRIOR_DRIFT (M is re-estimated,
               O(members), each time the members' sessions reach a multiple of their number:
               O(1) amortised per session), and every eligible agent is then re-ranked.
               A candidate with a conversion ranking also keeps an `efficiency` one,
               used while it has `conversion_min_agents` or fewer eligible agents.
- `conversion` in the policy lab's oracle (`Engine(oracle=...)`, never in the daemon):
               (busy, −true rate, load / weight, last assigned at, file order): the
               highest true rate among the agents the rules allow.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from daemon.core.capacity import Capacity
from daemon.core.config import AgentConfig, GroupConfig, ShopConfig, parse_policy
from daemon.core.line import Line
from daemon.core.model import AgentState
from daemon.core.replies import ReplyFigures
from daemon.core.slots import SlotIndex
from daemon.core.stats import MAX_STRENGTH, MIN_STRENGTH, Stats
from topics.events import AgentStatus, Mode

RATE_FLOOR = 0.001
STRENGTH_EXPONENT = {"low": 0.5, "mid": 2.0, "high": 6.0}  # docs/routing.md: how chosen
LEVEL_FACTOR = {1: 0.6, 2: 0.8, 3: 1.0, 4: 1.25, 5: 1.5}

Key = tuple[float | int | str, ...]

POOL_KEY = ""  # the unmatched pool; group names are never empty


class AgentIndex:
    """Eligible agents by rank key: a heap with stale entries, and each one's live key
    (module docstring). The least live key is the agent to pick."""

    __slots__ = ("heap", "keys")

    def __init__(self) -> None:
        self.heap: list[Key] = []
        self.keys: dict[str, Key] = {}

    def __len__(self) -> int:
        """Eligible agents."""
        return len(self.keys)

    def put(self, agent_id: str, key: Key) -> None:
        """Rank the agent by `key` (its older entry, if any, goes stale)."""
        keys = self.keys
        if keys.get(agent_id) == key:
            return
        keys[agent_id] = key
        heap = self.heap
        heapq.heappush(heap, key)
        if len(heap) > 2 * len(keys) + 16:  # mostly stale: keep only the live keys
            heap[:] = keys.values()
            heapq.heapify(heap)

    def drop(self, agent_id: str) -> None:
        """The agent is no longer eligible (its heap entries are stale now)."""
        self.keys.pop(agent_id, None)

    def clear(self) -> None:
        """No agent is eligible."""
        self.heap.clear()
        self.keys.clear()

    def first(self, exclude: str | None = None) -> str | None:
        """The agent with the least live key other than `exclude`, or None."""
        heap, keys = self.heap, self.keys
        top = _top(heap, keys)
        if top is None:
            return None
        agent_id = str(top[-1])
        if agent_id != exclude:
            return agent_id
        heapq.heappop(heap)  # look past the excluded agent, then put it back
        second = _top(heap, keys)
        heapq.heappush(heap, top)
        return None if second is None else str(second[-1])


def _top(heap: list[Key], keys: dict[str, Key]) -> Key | None:
    """The least live key of a heap index, dropping the stale entries above it."""
    while heap:
        key = heap[0]
        if keys.get(str(key[-1])) is key:
            return key
        heapq.heappop(heap)
    return None


class Stride:
    """The weighted round robin's virtual passes (module docstring, `weighted`)."""

    __slots__ = ("passes", "vtime")

    def __init__(self) -> None:
        self.passes: dict[str, float] = {}  # agent id -> its virtual pass
        self.vtime = 0.0  # the least pass among the eligible agents at the last choice

    def enter(self, agent_id: str, weight: float) -> None:
        """The agent becomes eligible: it starts no earlier than the virtual time (half a
        stride past it, the first time)."""
        start = self.passes.get(agent_id)
        vtime = self.vtime
        self.passes[agent_id] = vtime + 0.5 / weight if start is None else max(start, vtime)

    def advance(self, agent_id: str, weight: float) -> None:
        """The agent got a buyer: its pass moves on by 1/weight."""
        passes = self.passes
        if agent_id in passes:
            self.vtime = passes[agent_id]
            passes[agent_id] += 1.0 / weight

    def passed_over(self, agent_id: str) -> None:
        """A choice passed over `agent_id`, the eligible agent with the least pass: the
        virtual time goes no later than that pass (`Candidate.chosen`)."""
        self.vtime = min(self.vtime, self.passes[agent_id])

    def learned(self) -> dict[str, object]:
        """The passes as plain data."""
        return {"passes": dict(self.passes), "vtime": self.vtime}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take the passes `learned` gave (a missing field keeps its default)."""
        if "passes" in data:
            self.passes = dict(data["passes"])
        self.vtime = data.get("vtime", self.vtime)


@dataclass(frozen=True, slots=True, eq=False)
class Ranking:
    """One way of picking in a candidate: a mode (with its strength for conversion) and
    the index of eligible agents by that mode's key. A candidate keeps one for its own mode
    and one for each other policy an experiment's arms use (contract §3.7), plus
    `efficiency` wherever a conversion ranking may fall back to it."""

    policy: str  # "efficiency", "conversion:high", ...: the mode, resolved
    mode: Mode
    strength: str
    index: AgentIndex = field(default_factory=AgentIndex)


def policy_key(mode: Mode, strength: str) -> str:
    """How a ranking is named: the mode, and the strength for conversion."""
    return f"conversion:{strength}" if mode is Mode.CONVERSION else mode.value


@dataclass(frozen=True, slots=True, eq=False)
class Candidate:
    """One group, or the pool of groups with accept_unmatched. See the module docstring."""

    key: str
    group: str | None  # reported in outputs; None for a pool of several groups
    mode: Mode
    strength: str
    queueing: bool  # queueing applies to at least one member's group
    caps: dict[str, int | None]  # member agent id -> cap here (None: queueing does not apply)
    member_groups: dict[str, str]  # member agent id -> group it is chosen in
    overflow_to: str | None
    total_cap: int
    agents: dict[str, AgentState]
    confs: dict[str, AgentConfig]
    min_conversion_agents: int
    rankings: tuple[Ranking, ...]  # its own mode's first, then the others it keeps
    policies: dict[str, Ranking]  # a policy as written (and each ranking's name) -> ranking
    conversions: tuple[Ranking, ...]  # its conversion rankings, which the prior re-ranks
    oracle: dict[str, float] | None = None  # the lab's true rates (daemon/core/engine.py)
    stride: Stride = field(default_factory=Stride)  # of its `weighted` ranking, if any
    line: Line = field(default_factory=Line)
    stats: Stats = field(default_factory=Stats)
    replies: ReplyFigures = field(default_factory=ReplyFigures)  # of its group (§3.6)
    capacity: Capacity = field(default_factory=Capacity)
    slots: SlotIndex = field(default_factory=SlotIndex)  # when slots free (estimate.py)

    @property
    def index(self) -> AgentIndex:
        """Its eligible agents by its own mode's key."""
        return self.rankings[0].index

    # ------------------------------------------------------------------ eligibility/index

    def is_member(self, agent_id: str) -> bool:
        """Whether the agent belongs to this candidate under the current configuration."""
        return agent_id in self.caps

    def is_eligible(self, agent: AgentState) -> bool:
        """Online, a member and — where queueing applies — below its cap here."""
        if agent.status is not AgentStatus.ONLINE or agent.id not in self.caps:
            return False
        cap = self.caps[agent.id]
        return cap is None or agent.load < cap

    def refresh(self, agent: AgentState) -> None:
        """Re-rank one member agent after anything about it changed, and count it again in
        what the estimate reads (`capacity`, `slots`)."""
        # Runs for every session start and end in each of the agent's candidates: one pass
        # that reads the agent once (is_eligible and weight, inlined).
        agent_id = agent.id
        caps = self.caps
        if agent_id not in caps:
            return
        self.slots.touch(agent_id)
        cap = caps[agent_id]
        self.capacity.agent_changed(agent, cap)
        if agent.status is not AgentStatus.ONLINE or (
            cap is not None and len(agent.sessions) >= cap
        ):  # not eligible: its heap entries are stale now
            for ranking in self.rankings:
                ranking.index.drop(agent_id)
            return
        for ranking in self.rankings:
            index = ranking.index
            if ranking.mode is Mode.WEIGHTED and agent_id not in index.keys:
                self.stride.enter(agent_id, self.confs[agent_id].weight)
            index.put(agent_id, self._key(agent, ranking))

    def rerank_busy(self, agent: AgentState) -> None:
        """The agent's busy flag flipped (nothing else): only the keys that read it move."""
        agent_id = agent.id
        for ranking in self.rankings:
            mode = ranking.mode
            if mode is Mode.AVERAGE or mode is Mode.WEIGHTED or agent_id not in ranking.index.keys:
                continue
            ranking.index.put(agent_id, self._key(agent, ranking))

    def weight(self, agent_id: str) -> int:
        """The member's capacity here: its cap, or 1 where queueing does not apply."""
        cap = self.caps[agent_id]
        return 1 if cap is None else cap

    def _key(self, agent: AgentState, ranking: Ranking) -> Key:
        conf = self.confs[agent.id]
        mode = ranking.mode
        tail = (agent.last_assigned_at, agent.ordinal, agent.id)
        if mode is Mode.AVERAGE:
            return (agent.shift_assignments, *tail)
        if mode is Mode.WEIGHTED:
            return (self.stride.passes[agent.id], agent.ordinal, agent.id)
        busy = int(agent.busy)
        if mode is Mode.EFFICIENCY:
            return (busy, agent.load / conf.weight, *tail)
        if self.oracle is not None:
            return (busy, -self.oracle.get(agent.id, 0.0), agent.load / conf.weight, *tail)
        return (busy, (agent.load + 1) / self.score(agent, ranking.strength), *tail)

    def score(self, agent: AgentState, strength: str | None = None) -> float:
        """Conversion-priority score: weight × level factor × relative rate ** strength
        (its own strength unless another is named)."""
        conf = self.confs[agent.id]
        prior = max(self.stats.prior_used, RATE_FLOOR)
        rate = max(self.rate(agent), RATE_FLOOR)
        exponent = STRENGTH_EXPONENT[strength or self.strength]
        relative: float = (rate / prior) ** exponent
        return conf.weight * LEVEL_FACTOR[conf.level] * relative

    def rate(self, agent: AgentState) -> float:
        """The agent's conversion rate as routing sees it (see the module docstring)."""
        if agent.external_rate is not None:
            return agent.external_rate
        return self.stats.shrunk(agent.converted_sessions, agent.sessions_total)

    def current_strength(self) -> float:
        """The Beta prior's strength (pseudo-sessions) by the method of moments, O(members).

        The spread of the members' observed rates, n-weighted, less what binomial noise
        alone gives, is the spread of their true rates, τ²; a Beta prior with that spread
        around mean μ has strength μ(1 − μ)/τ² − 1, kept within [MIN_STRENGTH,
        MAX_STRENGTH]. No spread beyond noise (or fewer than two agents with sessions):
        MAX_STRENGTH, every agent near the mean.
        """
        agents = self.agents
        k = total = converted = 0
        squares = sizes = 0.0
        for agent_id in self.caps:
            agent = agents[agent_id]
            n = agent.sessions_total
            if n <= 0:
                continue
            c = min(agent.converted_sessions, n)
            k += 1
            total += n
            converted += c
            squares += c * c / n
            sizes += n * n
        if k < 2:
            return MAX_STRENGTH
        mean = converted / total
        noise = (k - 1) * mean * (1.0 - mean)
        spread = (squares - mean * converted - noise) / (total - sizes / total)
        if spread <= 0.0 or mean <= 0.0:
            return MAX_STRENGTH
        return min(MAX_STRENGTH, max(MIN_STRENGTH, mean * (1.0 - mean) / spread - 1.0))

    def rerank_if_prior_drifted(self, started: bool = False) -> None:
        """Re-rank every eligible agent when the mean or the prior's strength moved by more
        than PRIOR_DRIFT (`Stats.move_prior`). The strength is re-estimated after a session
        start (`started`) each time the members' sessions reach a multiple of their number:
        O(1) amortised."""
        conversions = self.conversions
        if not conversions:
            return
        stats = self.stats
        prior = stats.current_prior()
        strength = stats.prior_strength
        if started and stats.sessions_sum % max(1, len(self.caps)) == 0:
            strength = self.current_strength()
        if not stats.move_prior(prior, strength):
            return
        eligible = list(self.index.keys)
        for ranking in conversions:
            ranking.index.clear()
            for agent_id in eligible:
                ranking.index.put(agent_id, self._key(self.agents[agent_id], ranking))

    # --------------------------------------------------------------------------- choosing

    def choose(
        self, exclude: str | None = None, policy: str | None = None
    ) -> tuple[str, Mode] | None:
        """The agent this candidate's mode picks now (and the mode used), or None; with
        `policy` (an experiment arm's, contract §3.7), the agent that policy picks."""
        ranking = self.rankings[0] if policy is None else self.policies[policy]
        if (
            ranking.mode is Mode.CONVERSION
            and len(ranking.index.keys) <= self.min_conversion_agents
        ):
            ranking = self.policies[Mode.EFFICIENCY.value]
        agent_id = ranking.index.first(exclude)
        return None if agent_id is None else (agent_id, ranking.mode)

    def chosen(self, agent_id: str, mode: Mode) -> None:
        """Advance the weighted round robin after `agent_id` got a buyer here by `mode`.
        The virtual time is the least pass among the eligible agents: the chosen one's,
        unless the choice passed over an agent with a lower pass (a move excludes the agent
        the buyer leaves). A restore starts every eligible agent no earlier than the virtual
        time: were it past an eligible agent's pass, a restart would change whose turn
        comes."""
        if mode is Mode.WEIGHTED:
            self.stride.advance(agent_id, self.confs[agent_id].weight)
            first = self.policies[Mode.WEIGHTED.value].index.first()  # still by its old pass
            if first is not None and first != agent_id:
                self.stride.passed_over(first)

    def has_eligible(self) -> bool:
        """Whether any agent could take a buyer here now."""
        return bool(self.index.keys)


def runtime_of(cand: Candidate) -> dict[str, object]:
    """A candidate's learned state as plain data: its parts' (the indexes, the line's
    buyers and the capacity figures are derived again on restore)."""
    return {
        **cand.stride.learned(),
        **cand.stats.learned(),
        **cand.line.learned(),
        "replies": cand.replies.learned(),
    }


def set_runtime(cand: Candidate, data: Mapping[str, Any]) -> None:
    """Give a freshly built candidate the learned state `runtime_of` returned."""
    cand.stride.restore(data)
    cand.stats.restore(data)
    cand.line.restore(data)
    cand.replies.restore(data.get("replies", {}))


def build_candidates(
    shop: ShopConfig, agents: dict[str, AgentState], oracle: dict[str, float] | None = None
) -> tuple[dict[str, Candidate], Candidate | None]:
    """Every group's candidate (by name) and the unmatched pool (None if no group accepts).
    `oracle`: the lab's true rates, which conversion mode then ranks by (module docstring)."""
    confs = {a.id: a for a in shop.agents}
    cands = {g.name: _make(shop, (g,), agents, confs, oracle) for g in shop.groups}
    pooled = tuple(g for g in shop.groups if g.accept_unmatched)
    if not pooled:
        return cands, None
    if len(pooled) == 1:
        return cands, cands[pooled[0].name]
    return cands, _make(shop, pooled, agents, confs, oracle)


def _make(
    shop: ShopConfig,
    groups: tuple[GroupConfig, ...],
    agents: dict[str, AgentState],
    confs: dict[str, AgentConfig],
    oracle: dict[str, float] | None,
) -> Candidate:
    single = groups[0] if len(groups) == 1 else None
    q = shop.queue
    caps: dict[str, int | None] = {}
    member_groups: dict[str, str] = {}
    for group in groups:
        queueing = q.enabled and (q.scope == "shop" or group.name in q.groups)
        for agent_id in group.agents:
            if agent_id not in caps:
                cap = confs[agent_id].cap or group.cap or q.default_cap
                caps[agent_id] = cap if queueing else None
                member_groups[agent_id] = group.name
    mode = single.mode if single and single.mode else shop.mode
    strength = single.conversion_strength if single else "mid"
    rankings, policies = _rankings(shop, mode, strength)
    return Candidate(
        key=single.name if single else POOL_KEY,
        group=single.name if single else None,
        mode=mode,
        strength=strength,
        queueing=any(cap is not None for cap in caps.values()),
        caps=caps,
        member_groups=member_groups,
        overflow_to=single.overflow_to if single else None,
        total_cap=sum(cap or q.default_cap for cap in caps.values()),
        agents=agents,
        confs=confs,
        min_conversion_agents=shop.conversion_min_agents,
        rankings=rankings,
        conversions=tuple(r for r in rankings if r.mode is Mode.CONVERSION),
        policies=policies,
        oracle=oracle,
    )


def _rankings(
    shop: ShopConfig, mode: Mode, strength: str
) -> tuple[tuple[Ranking, ...], dict[str, Ranking]]:
    """A candidate's rankings: its own mode's, each experiment arm's policy (a conversion
    policy without a strength takes the candidate's), and `efficiency` where a conversion
    ranking may fall back to it; and the policies, as written, that name each."""
    wanted = [(mode, strength)]
    written: list[tuple[str, Mode, str]] = []
    if shop.experiment is not None:
        for policy in shop.experiment.arms.values():
            arm_mode, arm_strength = parse_policy(policy)
            written.append((policy, arm_mode, arm_strength or strength))
            wanted.append((arm_mode, arm_strength or strength))
    if any(m is Mode.CONVERSION for m, _ in wanted):
        wanted.append((Mode.EFFICIENCY, strength))
    policies: dict[str, Ranking] = {}
    for m, s in wanted:
        name = policy_key(m, s)
        if name not in policies:
            policies[name] = Ranking(name, m, s)
    rankings = tuple(policies.values())
    for policy, m, s in written:
        policies[policy] = policies[policy_key(m, s)]
    return rankings, policies
