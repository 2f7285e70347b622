"""A candidate: a group (or the pool of unmatched-accepting groups) with its live indexes.

Each candidate keeps, for its eligible agents only, an index whose first entry is the
agent its mode picks next, so choosing an agent costs O(log n) and never scans the group
(CONTRACT 3 rule 5). The index is a heap of rank keys with lazy deletion: `keys` holds each
eligible agent's live key, and a heap entry that is not that very tuple is stale, skipped
when it comes to the top and dropped when stale entries outnumber live ones (a session start
or end moves an agent with one C-level push instead of a sorted-list remove and insert).
The keys, by mode:

- `average`    (shift assignments, last assigned at, file order)
- `weighted`   (virtual pass, file order) — smooth weighted round robin in its O(log n)
               stride form: the chosen agent's pass advances by 1/weight, an agent that
               becomes eligible again starts no earlier than the group's virtual time, so
               shares follow weights without bursts.
- `efficiency` (busy, load / weight, last assigned at, file order)
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
               A conversion candidate also keeps an `efficiency` index, used while it has
               `conversion_min_agents` or fewer eligible agents.
- `conversion` in the policy lab's oracle (`Engine(oracle=...)`, never in the daemon):
               (busy, −true rate, load / weight, last assigned at, file order): the
               highest true rate among the agents the rules allow.

The queue is a sorted list ordered by (−priority, arrival, seq): dequeue, removal and a
buyer's position all cost O(log n).

The wait estimate is `daemon.core.estimate`, which reads when open sessions will end. Its
fallback, `estimate_s`, for the buyer at 1-based position k when no member agent is online
at its cap (so no session end is known to wait for):

    free   = free slots of eligible agents (Σ cap − load; "unbounded" without queueing)
    busy   = open sessions of online member agents, each counted up to its cap
    H      = mean session duration in this candidate: an EWMA of observed durations,
             blended with `queue.avg_handle_time` until SEED_SESSIONS sessions have ended
    need   = k − free                    (session ends needed before this buyer is served)
    wait   = 0                               if need ≤ 0
           = need · H / busy                 if busy > 0  (sessions end at rate busy / H)
           = H · ⌈k / total member cap⌉      otherwise (nobody online or working: at
                                             least one handle time, more for long lines)
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from sortedcontainers import SortedList

from daemon.core.config import AgentConfig, GroupConfig, ShopConfig
from daemon.core.model import AgentState, QueueEntry
from daemon.core.patience import Survival, new_patience, observe
from daemon.core.slots import SlotIndex
from topics.events import AgentStatus, Mode

SEED_SESSIONS = 20  # ended sessions before the observed handle time is trusted alone
HANDLE_EWMA = 0.1  # weight of each new session duration in the observed handle time
STAY_EWMA = 0.05  # weight of each queue exit in the share of buyers who stay until served
PRIOR_SESSIONS = 20.0  # pseudo-sessions anchoring a candidate's mean at DEFAULT_PRIOR
MIN_STRENGTH = 10.0  # least pseudo-sessions pulling an agent's observed rate to the mean
MAX_STRENGTH = 50.0  # most (no spread between agents beyond binomial noise)
DEFAULT_PRIOR = 0.1  # assumed conversion before a candidate has any data
PRIOR_DRIFT = 0.1  # relative change of the candidate mean that triggers a re-rank
RATE_FLOOR = 0.001
STRENGTH_EXPONENT = {"low": 0.5, "mid": 2.0, "high": 6.0}  # docs/routing.md: how chosen
LEVEL_FACTOR = {1: 0.6, 2: 0.8, 3: 1.0, 4: 1.25, 5: 1.5}

Key = tuple[float | int | str, ...]
QueueItem = tuple[int, int, int, str]  # (-priority, arrival, seq, buyer_id)

POOL_KEY = ""  # the unmatched pool; group names are never empty


_NOTHING = (0, 0, 0)  # an agent's (online, busy slots, free slots) when it is not online


@dataclass(slots=True, eq=False)
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
    busy_threshold: int
    min_conversion_agents: int
    oracle: dict[str, float] | None = None  # the lab's true rates (daemon/core/engine.py)
    queue: SortedList[QueueItem] = field(default_factory=SortedList)
    index: list[Key] = field(default_factory=list)  # heaps, with stale entries (docstring)
    eff_index: list[Key] = field(default_factory=list)
    keys: dict[str, Key] = field(default_factory=dict)
    eff_keys: dict[str, Key] = field(default_factory=dict)
    passes: dict[str, float] = field(default_factory=dict)
    vtime: float = 0.0
    prior_used: float = DEFAULT_PRIOR
    prior_strength: float = MAX_STRENGTH  # pseudo-sessions of the Beta prior (current_strength)
    sessions_sum: int = 0
    converted_sum: int = 0
    handle_ewma: float = 0.0
    handle_n: int = 0
    stay: float = 1.0  # share of this queue's buyers served rather than gone (observe_exit)
    patience: list[float] = field(default_factory=new_patience)  # when they give up
    survival: Survival | None = None  # `patience` read (derived: None after each change)
    last_tick: int = -(10**15)
    dirty: bool = False
    contrib: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    slots: SlotIndex = field(default_factory=SlotIndex)  # when slots free (estimate.py)
    # expected slots of offline members coming online (daemon/core/arrivals.py), as of the
    # minute `coming_at` (-1: to compute again); derived, a cache of estimate.outlook
    coming: list[tuple[int, float]] = field(default_factory=list)
    coming_at: int = -1
    # online capacity (Σ cap, 1 where queueing does not apply; kept by `refresh`), and the
    # part of each other candidate's online capacity held by agents also in this one, by
    # its key (kept by Routing, which sees both); estimate.py reads them
    online_weight: int = 0
    shared: dict[str, int] = field(default_factory=dict)
    online: int = 0
    busy_slots: int = 0
    free_slots: int = 0

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
        """Re-rank one member agent after anything about it changed, and keep the online /
        busy-slot / free-slot totals the estimate reads up to date."""
        # Runs for every session start and end in each of the agent's candidates: one pass
        # that reads the agent once (is_eligible and weight, inlined).
        agent_id = agent.id
        caps = self.caps
        if agent_id not in caps:
            return
        self.slots.touch(agent_id)
        cap = caps[agent_id]
        online = agent.status is AgentStatus.ONLINE
        load = len(agent.sessions)
        if agent.status is AgentStatus.SUSPENDED:
            self.coming_at = -1  # back from its break with these sessions (estimate.coming)
        if not online:
            new = _NOTHING
        elif cap is None:
            new = (1, load, 1)
        else:
            new = (1, min(load, cap), max(0, cap - load))
        old = self.contrib.get(agent_id, _NOTHING)
        if new != old:
            if new[0] != old[0]:
                self.online_weight += (new[0] - old[0]) * (1 if cap is None else cap)
            self.online += new[0] - old[0]
            self.busy_slots += new[1] - old[1]
            self.free_slots += new[2] - old[2]
            self.contrib[agent_id] = new
        if not online or (cap is not None and load >= cap):  # not eligible
            self._drop(agent_id)
            return
        mode = self.mode
        if mode is Mode.WEIGHTED and agent_id not in self.keys:
            start = self.passes.get(agent_id)
            half_stride = 0.5 / self.confs[agent_id].weight
            self.passes[agent_id] = (
                self.vtime + half_stride if start is None else max(start, self.vtime)
            )
        self._put(self.index, self.keys, agent_id, self._key(agent, mode))
        if mode is Mode.CONVERSION:
            self._put(self.eff_index, self.eff_keys, agent_id, self._key(agent, Mode.EFFICIENCY))

    def rerank_busy(self, agent: AgentState) -> None:
        """The agent's busy flag flipped (nothing else): only the keys that read it move."""
        agent_id = agent.id
        mode = self.mode
        if mode is Mode.AVERAGE or mode is Mode.WEIGHTED or agent_id not in self.keys:
            return
        self._put(self.index, self.keys, agent_id, self._key(agent, mode))
        if mode is Mode.CONVERSION:
            self._put(self.eff_index, self.eff_keys, agent_id, self._key(agent, Mode.EFFICIENCY))

    def weight(self, agent_id: str) -> int:
        """The member's capacity here: its cap, or 1 where queueing does not apply."""
        cap = self.caps[agent_id]
        return 1 if cap is None else cap

    @staticmethod
    def _put(index: list[Key], keys: dict[str, Key], agent_id: str, key: Key) -> None:
        if keys.get(agent_id) == key:
            return
        keys[agent_id] = key
        heapq.heappush(index, key)
        if len(index) > 2 * len(keys) + 16:  # mostly stale: keep only the live keys
            index[:] = keys.values()
            heapq.heapify(index)

    def _drop(self, agent_id: str) -> None:
        self.keys.pop(agent_id, None)  # its heap entries are stale now
        self.eff_keys.pop(agent_id, None)

    def _key(self, agent: AgentState, mode: Mode) -> Key:
        conf = self.confs[agent.id]
        tail = (agent.last_assigned_at, agent.ordinal, agent.id)
        if mode is Mode.AVERAGE:
            return (agent.shift_assignments, *tail)
        if mode is Mode.WEIGHTED:
            return (self.passes[agent.id], agent.ordinal, agent.id)
        busy = int(agent.pending > self.busy_threshold)
        if mode is Mode.EFFICIENCY:
            return (busy, agent.load / conf.weight, *tail)
        if self.oracle is not None:
            return (busy, -self.oracle.get(agent.id, 0.0), agent.load / conf.weight, *tail)
        return (busy, (agent.load + 1) / self.score(agent), *tail)

    def score(self, agent: AgentState) -> float:
        """Conversion-priority score: weight × level factor × relative rate ** strength."""
        conf = self.confs[agent.id]
        prior = max(self.prior_used, RATE_FLOOR)
        rate = max(self.rate(agent), RATE_FLOOR)
        exponent = STRENGTH_EXPONENT[self.strength]
        relative: float = (rate / prior) ** exponent
        return conf.weight * LEVEL_FACTOR[conf.level] * relative

    def rate(self, agent: AgentState) -> float:
        """The agent's conversion rate as routing sees it (see the module docstring)."""
        if agent.external_rate is not None:
            return agent.external_rate
        return self.shrunk(agent.converted_sessions, agent.sessions_total)

    def shrunk(self, converted: int, sessions: int) -> float:
        """Posterior mean of an observed rate under the group's Beta prior."""
        strength = self.prior_strength
        return (converted + strength * self.prior_used) / (sessions + strength)

    def current_prior(self) -> float:
        """The candidate's mean conversion rate, weakly anchored at DEFAULT_PRIOR."""
        return (self.converted_sum + PRIOR_SESSIONS * DEFAULT_PRIOR) / (
            self.sessions_sum + PRIOR_SESSIONS
        )

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
        than PRIOR_DRIFT. The strength is re-estimated after a session start (`started`)
        each time the members' sessions reach a multiple of their number: O(1) amortised."""
        if self.mode is not Mode.CONVERSION:
            return
        prior = self.current_prior()
        strength = self.prior_strength
        if started and self.sessions_sum % max(1, len(self.caps)) == 0:
            strength = self.current_strength()
        if (
            abs(prior - self.prior_used) <= PRIOR_DRIFT * self.prior_used
            and abs(strength - self.prior_strength) <= PRIOR_DRIFT * self.prior_strength
        ):
            return
        self.prior_used = prior
        self.prior_strength = strength
        self.index.clear()
        self.keys.clear()
        for agent_id in list(self.eff_keys):
            agent = self.agents[agent_id]
            self._put(self.index, self.keys, agent_id, self._key(agent, Mode.CONVERSION))

    # --------------------------------------------------------------------------- choosing

    def choose(self, exclude: str | None = None) -> tuple[str, Mode] | None:
        """The agent this candidate's mode picks now (and the mode used), or None."""
        index, keys, mode = self.index, self.keys, self.mode
        if mode is Mode.CONVERSION and len(keys) <= self.min_conversion_agents:
            index, keys, mode = self.eff_index, self.eff_keys, Mode.EFFICIENCY
        first = _top(index, keys)
        if first is None:
            return None
        agent_id = str(first[-1])
        if agent_id != exclude:
            return agent_id, mode
        heapq.heappop(index)  # look past the excluded agent, then put it back
        second = _top(index, keys)
        heapq.heappush(index, first)
        return None if second is None else (str(second[-1]), mode)

    def chosen(self, agent_id: str) -> None:
        """Advance the weighted round robin after `agent_id` got a buyer here."""
        if self.mode is Mode.WEIGHTED and agent_id in self.passes:
            self.vtime = self.passes[agent_id]
            self.passes[agent_id] += 1.0 / self.confs[agent_id].weight

    def has_eligible(self) -> bool:
        """Whether any agent could take a buyer here now."""
        return bool(self.keys)

    # ------------------------------------------------------------------------------ queue

    @staticmethod
    def item(entry: QueueEntry, buyer_id: str) -> QueueItem:
        """The queue's sort item for an entry."""
        return (-entry.priority, entry.arrival, entry.seq, buyer_id)

    def position(self, entry: QueueEntry, buyer_id: str) -> int:
        """1-based place in line."""
        return int(self.queue.bisect_left(self.item(entry, buyer_id))) + 1

    def head(self) -> QueueItem | None:
        """The first buyer in line, or None."""
        return self.queue[0] if self.queue else None

    # --------------------------------------------------------------------------- estimate

    def observe_session(self, duration_ms: int) -> None:
        """Feed one ended session's duration into the handle-time estimate."""
        if self.handle_n == 0:
            self.handle_ewma = float(duration_ms)
        else:
            self.handle_ewma += HANDLE_EWMA * (duration_ms - self.handle_ewma)
        self.handle_n += 1

    def observe_exit(self, served: bool, waited_ms: int, left: bool) -> None:
        """Feed one exit from the queue after `waited_ms` in line: served, or gone (`left`:
        gave up; else expired or overflowed)."""
        self.stay += STAY_EWMA * (float(served) - self.stay)
        observe(self.patience, waited_ms, left)
        self.survival = None

    def read_patience(self) -> Survival:
        """`patience` read for the estimates, kept until the next exit changes it."""
        survival = self.survival
        if survival is None:
            survival = self.survival = Survival(self.patience)
        return survival

    def handle_time_ms(self, seed_ms: int) -> float:
        """Mean session duration: observed, blended with the seed until enough data."""
        weight = min(self.handle_n, SEED_SESSIONS) / SEED_SESSIONS
        return weight * self.handle_ewma + (1.0 - weight) * seed_ms

    def estimate_s(self, position: int, seed_ms: int) -> int:
        """Expected seconds until the buyer at `position` is assigned (module docstring)."""
        handle = self.handle_time_ms(seed_ms)
        need = position - self.free_slots
        if need <= 0:
            return 0
        if self.busy_slots > 0:
            return round(need * handle / self.busy_slots / 1000)
        return round(handle * math.ceil(position / max(1, self.total_cap)) / 1000)


def _top(index: list[Key], keys: dict[str, Key]) -> Key | None:
    """The least live key of a heap index, dropping the stale entries above it."""
    while index:
        key = index[0]
        if keys.get(str(key[-1])) is key:
            return key
        heapq.heappop(index)
    return None


RUNTIME_FIELDS = (
    "passes",
    "vtime",
    "prior_used",
    "prior_strength",
    "sessions_sum",
    "converted_sum",
    "handle_ewma",
    "handle_n",
    "stay",
    "patience",
    "last_tick",
    "dirty",
)
"""Learned state of a candidate that survives reloads and snapshots (indexes are rebuilt)."""


def runtime_of(cand: Candidate) -> dict[str, object]:
    """A candidate's learned state as plain data."""
    data = {name: getattr(cand, name) for name in RUNTIME_FIELDS}
    data["passes"] = dict(cand.passes)
    data["patience"] = list(cand.patience)
    return data


def set_runtime(cand: Candidate, data: dict[str, object]) -> None:
    """Give a freshly built candidate the learned state `runtime_of` returned."""
    for name in RUNTIME_FIELDS:
        if name in data:
            value = data[name]
            if isinstance(value, dict):
                value = dict(value)
            elif isinstance(value, list):
                value = [float(v) for v in value]
            setattr(cand, name, value)
    cand.survival = None


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
    return Candidate(
        key=single.name if single else POOL_KEY,
        group=single.name if single else None,
        mode=(single.mode if single and single.mode else shop.mode),
        strength=single.conversion_strength if single else "mid",
        queueing=any(cap is not None for cap in caps.values()),
        caps=caps,
        member_groups=member_groups,
        overflow_to=single.overflow_to if single else None,
        total_cap=sum(cap or q.default_cap for cap in caps.values()),
        agents=agents,
        confs=confs,
        busy_threshold=shop.busy_threshold,
        min_conversion_agents=shop.conversion_min_agents,
        oracle=oracle,
    )
