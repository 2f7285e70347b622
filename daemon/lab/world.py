"""Simulated buyers and agents, with common random numbers.

Every random figure of buyer k comes from its own generator seeded by (seed, k), of agent j
from (seed, "agent", j), and arrival times from (seed, "arrivals"). A buyer draws all of a
visit's figures (chat length, think times, patience, order draw, return) when the visit
starts, in a fixed order, so policies that route differently still see the same buyers
with the same attributes, and the same agents with the same shifts; only routing and what
follows from it (who serves, how long they wait) differs.

Behaviour (times in seconds unless said):

- Buyer kind: a group, drawn in proportion to the group's capacity (its agents' caps; an
  agent in several groups counts in each for an equal part), so every group is about as
  loaded as its staff allows; groups with `accept_unmatched` give a quarter of their share
  (all of it when nothing matches them) to buyers who match no group. The context is one
  of the group's own match values (crowd tag, item, intent or order status) that really
  reaches the group under the shop's matching order; unmatched buyers send no context.
- Intent: Beta(2, 2.5), mean 0.44. The chance of an order after a session is the serving
  agent's true conversion rate × intent / mean intent (capped at 1), so an average buyer
  converts at the agent's rate; the draw is one uniform per visit, so a better agent
  converts every buyer a worse one would, and more.
- Chat: 1 + ⌊Exp(mean 2)⌋ rounds (at most 10). Round i: the buyer writes after a think
  time (the first message 3–20 s after the assignment, later ones lognormal, median 25 s),
  the agent replies after its median reply time × a lognormal factor (median 1) × (1 +
  0.1 per open session beyond the first). After the last reply the session ends by the
  engine's session timeout.
- Ignored first messages (`ignored_first`, a share, 0 unless asked): the agent is away
  without changing its status and never answers the first message of that session. Which
  sessions are drawn from (seed, "ignored", inquiry id), so every policy ignores the same
  buyers. The buyer wrote last, so the session stays open (contract §3.2) and holds the
  agent's slot until the agent goes offline, unless the buyer is moved to another agent
  (any new assignment of a buyer in session: `unanswered`, a transfer), who answers at its
  own pace: its median × a lognormal factor of its own for the question (from (seed,
  "moved", the new session's id), so every policy that moves the buyer draws the same) ×
  its load. The visit's factor for the round was the first agent's reply, and a buyer
  moves for not being answered precisely when that draw ran long: the new agent taking it
  over would carry the first agent's slowness to another person (docs/lab.md, "Replies").
- Waiting for a reply (`reply_survival`): a buyer waits REPLY_GRACE_S for each reply without
  a thought of leaving, then leaves at a constant rate, 1 / REPLY_PATIENCE_S, while it
  still waits: its patience beyond the grace is Exp(mean REPLY_PATIENCE_S), one draw per
  inquiry from (seed, "reply", inquiry id), spent over all its waits of the session. A buyer
  who left writes no more and orders nothing from the session (a reply still comes: the
  agent does not know). So the chance that a buyer is still there, and the order chance
  with it, is exp(−Σ max(0, wait − grace) / patience): unchanged by replies within the
  grace (the calibration above), 61% after one 4-minute wait, 22% after 6 minutes.
- Patience: lognormal, median 4 minutes; a queued buyer sends `leave` after it.
- After a session: the order (if drawn) comes 0–30 minutes later (Exp, mean 3 minutes,
  70%) or 10 minutes–12 hours later (30%), within the conversion window; amount
  lognormal, median 160. A quarter of buyers come back: 35% of them 1–25 minutes later
  (repeat entry), the others 1–60 hours later (log-uniform; sticky recent contact).
  A buyer whose chat was cut short by the agent going offline writes again 5–60 s later.
- Agents: a true conversion rate by the role of their first group: presale (items or a
  "presale" intent) 8–35%, vip (a crowd) 12–30%, aftersale (an "aftersale" intent or an
  order status) 1–5%, general 5–18%, uniform; a median reply time of 12–40 s. Within a
  shift, a short suspend (2–12 minutes) about every two hours; ten minutes before a shift
  ends (unless the run ends first) the agent suspends to let its chats finish, then goes
  offline.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from daemon.core.config import GroupConfig, ShopConfig
from daemon.core.engine import Engine
from daemon.lab.scenarios import HOUR_MS, MINUTE_MS, Scenario, grouped_agents
from topics.events import AgentStatus, InquiryContext

INTENT_A, INTENT_B = 2.0, 2.5
INTENT_MEAN = INTENT_A / (INTENT_A + INTENT_B)
MEAN_EXTRA_ROUNDS = 2.0
MAX_ROUNDS = 10
FIRST_MESSAGE_S = (3.0, 20.0)
THINK_MEDIAN_S, THINK_SIGMA = 25.0, 0.7
REPLY_MEDIAN_S = (12.0, 40.0)
REPLY_SIGMA = 0.6
LOAD_SLOWDOWN = 0.1
PATIENCE_MEDIAN_S, PATIENCE_SIGMA = 240.0, 0.9
REPLY_GRACE_S = 180.0  # Taobao's 3-minute response: a reply within it costs nothing
REPLY_PATIENCE_S = 120.0  # then the buyer leaves at this mean (exponential, as Erlang-A)
RETURN_SHARE = 0.25
REPEAT_SHARE = 0.35
REPEAT_AFTER_S = (60.0, 1500.0)
STICKY_AFTER_H = (1.0, 60.0)
REINQUIRE_S = (5.0, 60.0)
ORDER_SOON_SHARE, ORDER_SOON_MEAN_S, ORDER_SOON_MAX_S = 0.7, 180.0, 1800.0
ORDER_LATE_S = (600.0, 43_200.0)
AMOUNT_MEDIAN, AMOUNT_SIGMA = 160.0, 0.6
UNMATCHED_SHARE = 0.25
SUSPEND_EVERY_S = 7200.0
SUSPEND_S = (120.0, 720.0)
DRAIN_S = 600.0

CONVERSION_RANGES = {
    "presale": (0.08, 0.35),
    "vip": (0.12, 0.30),
    "aftersale": (0.01, 0.05),
    "general": (0.05, 0.18),
}


def order_chance(true_conversion: float, intent: float) -> float:
    """The chance that a buyer of `intent` orders after a session with an agent, answered
    within the grace (else times `reply_survival`)."""
    return min(1.0, true_conversion * intent / INTENT_MEAN)


def reply_excess_ms(waits_ms: Iterable[int]) -> int:
    """How long a buyer waited past the grace, over the waits for its replies (ms)."""
    grace = _ms(REPLY_GRACE_S)
    return sum(max(0, wait - grace) for wait in waits_ms)


def reply_survival(waits_ms: Iterable[int]) -> float:
    """The chance that a buyer who waited `waits_ms` for its replies is still there (module
    docstring): 1 when every wait is within the grace, falling exponentially past it."""
    return math.exp(-reply_excess_ms(waits_ms) / _ms(REPLY_PATIENCE_S))


def _lognormal_mean(median: float, sigma: float) -> float:
    return median * math.exp(sigma * sigma / 2)


EXPECTED_CHAT_S = (
    sum(FIRST_MESSAGE_S) / 2
    + MEAN_EXTRA_ROUNDS * _lognormal_mean(THINK_MEDIAN_S, THINK_SIGMA)
    + (1 + MEAN_EXTRA_ROUNDS)
    * (sum(REPLY_MEDIAN_S) / 2)
    * _lognormal_mean(1.0, REPLY_SIGMA)
    * (1 + LOAD_SLOWDOWN)
)
"""Mean time from assignment to the agent's last reply (load slowdown taken at 2 chats)."""


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


# ------------------------------------------------------------------------------ buyers


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of buyer: the group its context is drawn for (None: unmatched)."""

    group: str | None
    contexts: tuple[InquiryContext, ...]
    weight: float


@dataclass(slots=True)
class Visit:
    """One visit of a buyer (an inquiry and, if served, its chat); drawn when it starts."""

    number: int
    rounds: int
    think_ms: list[int]  # before each buyer message (the first: after the assignment)
    reply_factor: list[float]  # multiplies the agent's median reply time, per round
    patience_ms: int
    reinquire_ms: int  # writes again this long after a chat the agent's offline cut short
    order_u: float  # orders when below the order chance
    order_after_ms: int
    amount: float
    return_after_ms: int | None  # comes back this long after the session ended


@dataclass(slots=True)
class Buyer:
    """One simulated buyer."""

    k: int
    id: str
    rng: random.Random
    kind: Kind
    context: InquiryContext
    intent: float
    visits: int = 0

    def next_visit(self) -> Visit:
        """Draw the next visit's figures (always the same draws in the same order)."""
        rng = self.rng
        rounds = min(MAX_ROUNDS, 1 + int(rng.expovariate(1 / MEAN_EXTRA_ROUNDS)))
        think = [_ms(rng.uniform(*FIRST_MESSAGE_S))]
        think += [
            _ms(rng.lognormvariate(math.log(THINK_MEDIAN_S), THINK_SIGMA))
            for _ in range(rounds - 1)
        ]
        factors = [rng.lognormvariate(0.0, REPLY_SIGMA) for _ in range(rounds)]
        patience = _ms(rng.lognormvariate(math.log(PATIENCE_MEDIAN_S), PATIENCE_SIGMA))
        reinquire = _ms(rng.uniform(*REINQUIRE_S))
        order_u = rng.random()
        if rng.random() < ORDER_SOON_SHARE:
            order_after = _ms(min(ORDER_SOON_MAX_S, rng.expovariate(1 / ORDER_SOON_MEAN_S)))
        else:
            order_after = _ms(rng.uniform(*ORDER_LATE_S))
        amount = round(rng.lognormvariate(math.log(AMOUNT_MEDIAN), AMOUNT_SIGMA), 2)
        back, repeat, u = rng.random(), rng.random(), rng.random()
        return_after: int | None = None
        if back < RETURN_SHARE:
            if repeat < REPEAT_SHARE:
                lo, hi = REPEAT_AFTER_S
                return_after = _ms(lo + u * (hi - lo))
            else:
                lo, hi = STICKY_AFTER_H
                return_after = round(lo * (hi / lo) ** u * HOUR_MS)
        self.visits += 1
        return Visit(
            self.visits - 1,
            rounds,
            think,
            factors,
            patience,
            reinquire,
            order_u,
            order_after,
            amount,
            return_after,
        )


def buyer_kinds(shop: ShopConfig, caps: dict[str, int | None]) -> list[Kind]:
    """The kinds of buyer a shop gets and their weights (module docstring)."""
    contexts = matching_contexts(shop)
    counts: dict[str, int] = {}
    for group in shop.groups:
        for agent_id in group.agents:
            counts[agent_id] = counts.get(agent_id, 0) + 1
    kinds: list[Kind] = []
    unmatched = 0.0
    for group in shop.groups:
        weight = sum((caps.get(a) or shop.queue.default_cap) / counts[a] for a in group.agents)
        own = contexts.get(group.name, ())
        if group.accept_unmatched:
            share = UNMATCHED_SHARE if own else 1.0
            unmatched += weight * share
            weight *= 1.0 - share
        if own and weight > 0:
            kinds.append(Kind(group.name, own, weight))
    if unmatched > 0 and None in contexts:
        kinds.append(Kind(None, contexts[None], unmatched))
    if not kinds:
        raise ValueError(f"no buyer can reach any group of shop {shop.id!r}")
    return kinds


def matching_contexts(shop: ShopConfig) -> dict[str | None, tuple[InquiryContext, ...]]:
    """For each group, the one-value contexts that reach it; None: the unmatched pool."""
    engine = Engine({shop.id: shop}).shop(shop.id)
    found: dict[str | None, tuple[InquiryContext, ...]] = {}
    for group in shop.groups:
        m = group.match
        tries = [InquiryContext(crowd=(c,)) for c in m.crowd]
        tries += [InquiryContext(item_id=i) for i in m.items]
        tries += [InquiryContext(intent=i) for i in m.intents]
        tries += [InquiryContext(order_status=s) for s in m.order_status]
        reach = []
        for context in tries:
            cand = engine.candidate_for(context)
            if cand is not None and cand.group == group.name:
                reach.append(context)
        if reach:
            found[group.name] = tuple(reach)
    if engine.candidate_for(InquiryContext()) is not None:
        found[None] = (InquiryContext(),)
    return found


def new_buyer(seed: int, k: int, kinds: list[Kind]) -> Buyer:
    """Buyer k: its own generator, kind, context and intent."""
    rng = random.Random(f"{seed}:buyer:{k}")
    kind = rng.choices(kinds, [kind.weight for kind in kinds])[0]
    context = rng.choice(kind.contexts)
    intent = rng.betavariate(INTENT_A, INTENT_B)
    return Buyer(k, f"b{k:06d}", rng, kind, context, intent)


def ignores_first(seed: int, inquiry_id: str, share: float) -> bool:
    """Whether the first message of this inquiry's session goes unanswered (module
    docstring); never draws when `share` is 0."""
    return share > 0 and random.Random(f"{seed}:ignored:{inquiry_id}").random() < share


def moved_reply_factor(seed: int, session_id: str) -> float:
    """The factor of the reply to a question a buyer brought along when it moved to another
    agent (module docstring): lognormal, median 1, as every reply's."""
    return random.Random(f"{seed}:moved:{session_id}").lognormvariate(0.0, REPLY_SIGMA)


def reply_patience_ms(seed: int, inquiry_id: str) -> float:
    """How long past the grace, over its waits, this inquiry's buyer waits for replies."""
    return random.Random(f"{seed}:reply:{inquiry_id}").expovariate(1 / _ms(REPLY_PATIENCE_S))


# ------------------------------------------------------------------------------ agents


@dataclass(slots=True)
class Agent:
    """One simulated agent: true figures and its status changes over the run."""

    id: str
    groups: list[str]
    true_conversion: float
    reply_median_ms: float
    changes: list[tuple[int, AgentStatus]] = field(default_factory=list)  # time order
    load: int = 0  # open sessions, as the simulator sees them

    def reply_ms(self, factor: float) -> int:
        """How long the agent takes to answer, given the buyer's draw and its load."""
        slowdown = 1.0 + LOAD_SLOWDOWN * max(0, self.load - 1)
        return round(self.reply_median_ms * factor * slowdown)

    def online(self, start: int, end: int) -> list[tuple[int, int]]:
        """[start, end) intervals in which the agent is online, clipped to the run."""
        spans: list[tuple[int, int]] = []
        since: int | None = None
        for at, status in self.changes:
            if status is AgentStatus.ONLINE and since is None:
                since = at
            elif status is not AgentStatus.ONLINE and since is not None:
                spans.append((since, at))
                since = None
        if since is not None:
            spans.append((since, end))
        return [(max(a, start), min(b, end)) for a, b in spans if min(b, end) > max(a, start)]


def role(group: GroupConfig) -> str:
    """What kind of work a group does, for the agents' conversion spread."""
    m = group.match
    if m.crowd:
        return "vip"
    if m.items or "presale" in m.intents:
        return "presale"
    if "aftersale" in m.intents or m.order_status:
        return "aftersale"
    return "general"


def new_agents(shop: ShopConfig, scenario: Scenario, seed: int) -> list[Agent]:
    """Every configured agent, with its true figures and the scenario's shifts."""
    places = grouped_agents(shop)
    first_group: dict[str, GroupConfig] = {}
    groups_of: dict[str, list[str]] = {}
    for group in shop.groups:
        for agent_id in group.agents:
            first_group.setdefault(agent_id, group)
            groups_of.setdefault(agent_id, []).append(group.name)
    agents = []
    for j, conf in enumerate(shop.agents):
        rng = random.Random(f"{seed}:agent:{j}")
        home = first_group.get(conf.id)
        lo, hi = CONVERSION_RANGES[role(home) if home else "general"]
        agent = Agent(
            conf.id,
            groups_of.get(conf.id, []),
            round(rng.uniform(lo, hi), 4),
            rng.uniform(*REPLY_MEDIAN_S) * 1000,
        )
        shifts = scenario.plan(places.get(conf.id, j), rng)
        for first, last in shifts:
            agent.changes += shift_changes(scenario, first, last, rng)
        agents.append(agent)
    return agents


def shift_changes(
    scenario: Scenario, first: float, last: float, rng: random.Random
) -> list[tuple[int, AgentStatus]]:
    """Status changes of one shift: online, short suspends, the drain, offline."""
    start = scenario.start + round(first * HOUR_MS)
    end = scenario.start + round(last * HOUR_MS)
    final = end < scenario.end
    drain = end - _ms(DRAIN_S) if final else end
    out = [(start, AgentStatus.ONLINE)]
    t = start
    while True:
        t += _ms(rng.expovariate(1 / SUSPEND_EVERY_S))
        length = _ms(rng.uniform(*SUSPEND_S))
        if t + length >= drain - MINUTE_MS:
            break
        out += [(t, AgentStatus.SUSPENDED), (t + length, AgentStatus.ONLINE)]
        t += length
    if final:
        out += [(drain, AgentStatus.SUSPENDED), (end, AgentStatus.OFFLINE)]
    return out


def effective_caps(shop: ShopConfig) -> dict[str, int | None]:
    """Each agent's cap in the first group that queues (None: no group of it queues)."""
    q = shop.queue
    caps: dict[str, int | None] = {a.id: None for a in shop.agents}
    own = {a.id: a.cap for a in shop.agents}
    for group in shop.groups:
        if not q.enabled or (q.scope == "groups" and group.name not in q.groups):
            continue
        for agent_id in group.agents:
            if caps[agent_id] is None:
                caps[agent_id] = own[agent_id] or group.cap or q.default_cap
    return caps
