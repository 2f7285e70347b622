"""Grey tests in the lab (contract §3.7, issue 27): an experiment run inside a simulated
day, read as the daemon reads it, beside what only the simulated world knows.

    fenliu simulate --shop config/shops/presale.toml --scenario steady --days 7 \\
        --experiment control=efficiency,treatment=conversion:high \\
        --guardrails p95_wait=+20%,replies_within_deadline=-3pp

The shop runs the experiment in the routing core itself (`[experiment]`, daemon/core/
experiment.py): every buyer's arm, the arm's policy, the counts per arm and the guardrails
are the core's, and the figures are `daemon.core.experiment.report`'s. The lab adds:

- **The true uplift.** Per arm, the mean over the arm's sessions (those the core counts:
  routed, dequeued, sticky or repeat entry) of the world's chance that the session ends in
  an order: the serving agent's true rate × the buyer's intent (`world.order_chance`),
  and 0 for a buyer who left waiting for a reply or whose chat its agent cut short by going
  offline (it writes again, and that session has the chance). Those two are facts of the run
  drawn apart from the order, so given them the converted sessions are a sum of independent
  draws with these chances, and the true uplift (an arm's mean less control's) is what the
  reported uplift estimates. `true` counts every order, also those that would come after
  the run ends (a session still open at the end: its agent's chance, unless its buyer left);
  `true_due` only the orders due by then, what the counts could have seen (an order comes
  up to 12 hours after its session, `daemon.lab.world`): the estimate at a given time aims
  at `true_due` of that time.
- **Looks.** Every simulated hour the report is read again with the true uplift due by
  then: the intervals are meant to hold at every look, not only the last.
- **A harmful arm, lab only.** `one-slow-agent` is routed as `efficiency`; then the lab's
  front end hands every new session of the arm to one agent, the online agent with the
  slowest true reply pace (which only the world knows, as the oracle knows true rates), by a
  `transfer` to that agent, which the contract takes even at its cap, until the core stops
  the arm. That agent then holds dozens of chats and answers ever later (a simulated agent
  slows by 10% for each open chat beyond the first). The core knows only `efficiency`: a
  shop file cannot name `one-slow-agent` (the core refuses the policy). It exists to show a
  guardrail stopping an arm that really hurts; plain modes do not hurt enough in this world
  (`average`, which ignores busyness and load, leaves replies and waits as they are;
  BENCHMARKS.md, "Grey tests in the lab"), and neither does everyone to one agent when that
  agent is a fast one.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from daemon.core.config import ExperimentConfig, ShopConfig, parse_policy
from daemon.core.experiment import CONTROL, Experiment, report
from daemon.core.grey_stats import parse_guardrails
from daemon.core.model import AgentState
from topics.events import AgentStatus

LAB_NAME = "lab"  # the experiment's name when the shop file has none (it seeds the arms)
ONE_SLOW_AGENT = "one-slow-agent"  # the lab-only harmful policy (module docstring)
LAB_POLICIES = {ONE_SLOW_AGENT: "efficiency"}  # lab-only policy -> the core policy it routes by
NO_GUARDRAILS = "none"


@dataclass(frozen=True, slots=True)
class LabExperiment:
    """A grey test as the lab runs it: the core's `[experiment]` plus the arms whose policy
    is lab-only (`one-slow-agent`)."""

    name: str
    arms: dict[str, str]  # arm -> policy as the lab names it
    split: dict[str, int]
    guardrails: dict[str, str] = field(default_factory=dict)

    def config(self) -> ExperimentConfig:
        """The shop file's `[experiment]` for it (a lab-only policy as the core policy it
        routes by)."""
        arms = {arm: LAB_POLICIES.get(p, p) for arm, p in self.arms.items()}
        return ExperimentConfig(
            name=self.name, arms=arms, split=self.split, guardrails=self.guardrails
        )

    def apply(self, shop: ShopConfig) -> ShopConfig:
        """The shop running this experiment."""
        return shop.model_copy(update={"experiment": self.config()})

    @property
    def one_agent(self) -> frozenset[str]:
        """The arms whose buyers the lab hands to one slow agent."""
        return frozenset(arm for arm, p in self.arms.items() if p == ONE_SLOW_AGENT)

    @classmethod
    def of(cls, config: ExperimentConfig) -> LabExperiment:
        """A shop file's own `[experiment]`."""
        return cls(config.name, dict(config.arms), dict(config.split), dict(config.guardrails))


def lab_experiment(
    shop: ShopConfig, arms: str | None, split: str | None, guardrails: str | None
) -> LabExperiment | None:
    """The grey test `fenliu simulate` runs: the arms of `--experiment` ("control=efficiency,
    treatment=conversion:high"), split by `--split` ("control=50,treatment=50"; default as
    even as whole percents go) and guarded by `--guardrails` ("p95_wait=+20%,
    replies_within_deadline=-3pp", or "none"); what `--experiment` leaves out comes from
    the shop file's `[experiment]` (its name, split and guardrails). None when neither names
    arms. ValueError with a sentence for anything malformed."""
    own = shop.experiment
    if arms is None:
        if split is not None or guardrails is not None:
            raise ValueError("--split and --guardrails go with --experiment")
        return None if own is None else LabExperiment.of(own)
    parsed = _pairs(arms, "--experiment", "ARM=POLICY")
    if CONTROL not in parsed or len(parsed) < 2:
        raise ValueError(
            "--experiment needs an arm named 'control' and at least one other, such as "
            "control=efficiency,treatment=conversion:high"
        )
    for arm, policy in parsed.items():
        if policy not in LAB_POLICIES:
            try:
                parse_policy(policy)
            except ValueError as exc:
                lab_only = f"(or {ONE_SLOW_AGENT}, lab only)"
                raise ValueError(f"--experiment {arm}: {exc} {lab_only}") from None
    if split is not None:
        shares = _split(split, parsed)
    elif own is not None and set(own.split) == set(parsed):
        shares = dict(own.split)
    else:
        shares = _even(list(parsed))
    if guardrails is not None:
        rails = {} if guardrails == NO_GUARDRAILS else _pairs(guardrails, "--guardrails", "K=V")
    else:
        rails = {} if own is None else dict(own.guardrails)
    try:
        parse_guardrails(rails)
    except ValueError as exc:
        raise ValueError(f"--guardrails: {exc}") from None
    return LabExperiment(LAB_NAME if own is None else own.name, parsed, shares, rails)


def _pairs(text: str, flag: str, shape: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for clause in text.split(","):
        key, sep, value = (part.strip() for part in clause.partition("="))
        if not sep or not key or not value:
            raise ValueError(f"{flag}: {clause.strip()!r} is not {shape}")
        if key in pairs:
            raise ValueError(f"{flag}: {key!r} is named twice")
        pairs[key] = value
    return pairs


def _split(text: str, arms: Mapping[str, str]) -> dict[str, int]:
    shares: dict[str, int] = {}
    for arm, value in _pairs(text, "--split", "ARM=PERCENT").items():
        if not value.isdigit() or not 1 <= int(value) <= 100:
            raise ValueError(f"--split {arm}: {value!r} is not a whole percent from 1 to 100")
        shares[arm] = int(value)
    if set(shares) != set(arms):
        raise ValueError(f"--split names {sorted(shares)}; the arms are {sorted(arms)}")
    if sum(shares.values()) != 100:
        raise ValueError(f"--split adds up to {sum(shares.values())}, not 100")
    return shares


def _even(arms: list[str]) -> dict[str, int]:
    """As even as whole percents go; the first arms take what is left over."""
    base, extra = divmod(100, len(arms))
    return {arm: base + (i < extra) for i, arm in enumerate(arms)}


# ----------------------------------------------------------------------------- the watch


class GreyWatch:
    """What the lab's runner tells it of a grey test (module docstring): each session's
    true order chance, the looks every simulated hour, and for a `one-slow-agent` arm where
    its buyers go. The experiment itself is the engine's (read afresh: a restore replaces it)."""

    def __init__(
        self,
        spec: LabExperiment,
        running: Callable[[], Experiment | None],
        slowest_online: Callable[[], str | None],
    ) -> None:
        self.spec = spec
        self._running = running  # the engine's running experiment
        self._slowest_online = slowest_online  # the one agent of a one-slow-agent arm
        self.arms = list(spec.arms)
        self.sessions = dict.fromkeys(self.arms, 0)
        self.chance = dict.fromkeys(self.arms, 0.0)  # every order, also after the end
        self.chance_due = dict.fromkeys(self.arms, 0.0)  # the orders due by the last look
        self._due: list[tuple[int, int, str, float]] = []  # (due, seq, arm, chance)
        self._seq = 0
        self._open: dict[str, str] = {}  # inquiry id -> arm, sessions not yet closed
        self.looks: list[dict[str, Any]] = []

    def experiment(self) -> Experiment:
        """The engine's running experiment."""
        exp = self._running()
        assert exp is not None, "the shop runs no experiment"
        return exp

    def opened(self, inquiry_id: str, buyer_id: str) -> None:
        """A session the core counts opened for the buyer."""
        arm = self.experiment().arm_of(buyer_id)
        self.sessions[arm] += 1
        self._open[inquiry_id] = arm

    def closed(self, inquiry_id: str, chance: float, due: int | None) -> None:
        """The session ended with this true chance of an order, which would come at `due`
        (None: no order can come, or only after the run)."""
        arm = self._open.pop(inquiry_id, None)
        if arm is None:
            return
        self.chance[arm] += chance
        if due is not None and chance > 0.0:
            self._seq += 1
            heapq.heappush(self._due, (due, self._seq, arm, chance))

    def still_open(self, inquiry_id: str, chance: float) -> None:
        """A session still open when the run ends: its chance counts in `true` only."""
        arm = self._open.pop(inquiry_id, None)
        if arm is not None:
            self.chance[arm] += chance

    def hands_over(self, buyer_id: str) -> bool:
        """Whether the lab hands this buyer's new session to one agent (its arm is
        `one-slow-agent` and not stopped)."""
        if not self.spec.one_agent:
            return False
        exp = self.experiment()
        arm = exp.arm_of(buyer_id)
        return arm in self.spec.one_agent and arm not in exp.stopped

    def sink(self, current: str) -> str | None:
        """The one agent: the slowest online, unless it is `current`."""
        agent = self._slowest_online()
        return None if agent == current else agent

    def look(self, now: int) -> None:
        """Read the report at `now`, with the true uplift of the orders due by then."""
        due = self._due
        while due and due[0][0] <= now:
            _, _, arm, chance = heapq.heappop(due)
            self.chance_due[arm] += chance
        rep = report(self.experiment())
        truth = self._means(self.chance_due)
        uplifts = {}
        for row in rep["arms"]:
            arm = row["arm"]
            if arm != CONTROL and row["uplift"] is not None:
                uplifts[arm] = {**row["uplift"], "true_due": _minus(truth[arm], truth[CONTROL])}
        stopped = {row["arm"]: row["stopped"] for row in rep["arms"] if row["stopped"]}
        self.looks.append(
            {"at": now, "sessions": dict(self.sessions), "uplift": uplifts, "stopped": stopped}
        )

    def _means(self, sums: Mapping[str, float]) -> dict[str, float | None]:
        return {a: sums[a] / self.sessions[a] if self.sessions[a] else None for a in self.arms}

    def summary(self) -> dict[str, Any]:
        """The core's report with the lab's policies and the truth beside it (plain data);
        taken after the run's last look."""
        rep = report(self.experiment())
        true, due = self._means(self.chance), self._means(self.chance_due)
        for row in rep["arms"]:
            arm = row["arm"]
            row["lab_policy"] = self.spec.arms[arm]
            row["lab_sessions"] = self.sessions[arm]
            row["true"] = _round(true[arm])
            row["true_due"] = _round(due[arm])
            row["true_uplift"] = None if arm == CONTROL else _minus(true[arm], true[CONTROL])
            row["true_uplift_due"] = None if arm == CONTROL else _minus(due[arm], due[CONTROL])
        return {**rep, "looks": self.looks}


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 5)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


def slowest_online(paces: Mapping[str, float], agents: Mapping[str, AgentState]) -> str | None:
    """Of the agents with a true reply pace (`paces`, agent id -> median ms), the slowest
    who is online among the engine's `agents` (ties: the lower id)."""
    online = [
        a for a in paces if (s := agents.get(a)) is not None and s.status is AgentStatus.ONLINE
    ]
    return max(online, key=lambda a: (paces[a], a), default=None)
