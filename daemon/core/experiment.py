"""A shop's grey test (灰度测试, contract §3.7): each buyer's arm, and what is counted per arm.

A buyer's arm is a hash of (experiment name, buyer id) into 10,000 buckets, cut by the
split's percents in the order the file lists the arms: the same buyer is in the same arm on
every instance, after every restart, for as long as the experiment keeps its name. The arm's
policy replaces the candidates' modes for that buyer wherever a mode picks an agent (routing,
the line, repeat entry's fallback, a move for an unanswered message); everything else is
shared (`Candidate.choose(policy=...)`).

Per arm, at flat cost and bounded however long the experiment runs:

- `buyers`: inquiries that got a session or a place in line (a buyer who comes back later
  counts again);
- `sessions`: sessions those inquiries opened (a transfer or a move continues a session),
  `converted`: of them, the ones an order was credited to (contract §1.2, within
  `conversion_window`), and `orders` with their `amount`;
- `waits`: each session's time in line (0 for a buyer served at once), as a histogram;
- `replies`, `in_time`: agents' replies to the arm's buyers, and those within the deadline.

Counting is intention-to-treat: a buyer stays counted in its arm after a guardrail stopped
the arm (its buyers then get control's policy), so the figures still compare like with like.
The statistics (intervals valid however often they are read, the guardrails' tests) are
`daemon/core/grey_stats.py`'s; this module only counts and decides when to ask them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from daemon.core.config import ExperimentConfig
from daemon.core.grey_stats import (
    ALPHA,
    WAIT_QUANTILE,
    Breach,
    WaitHistogram,
    parse_guardrails,
    proportion_interval,
    quantile_interval,
    replies_guardrail,
    uplift,
    wait_guardrail,
)

BUCKETS = 10_000
CHECK_EVERY = 20  # counted waits and replies between two looks at the guardrails
FINISHED_KEPT = 16  # finished experiments kept for the report, newest last
CONTROL = "control"


def arm_bucket(name: str, buyer_id: str) -> int:
    """Where a buyer falls in [0, BUCKETS) for the experiment `name`: a stable hash."""
    digest = hashlib.blake2b(f"{name}\x00{buyer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(slots=True)
class ArmFigures:
    """What is counted for one arm (module docstring)."""

    buyers: int = 0
    sessions: int = 0
    converted: int = 0
    orders: int = 0
    amount: float = 0.0
    waits: WaitHistogram = field(default_factory=WaitHistogram)
    replies: int = 0
    in_time: int = 0

    def learned(self) -> dict[str, Any]:
        """As plain data."""
        return {
            "buyers": self.buyers,
            "sessions": self.sessions,
            "converted": self.converted,
            "orders": self.orders,
            "amount": self.amount,
            "waits": self.waits.learned(),
            "replies": self.replies,
            "in_time": self.in_time,
        }

    @classmethod
    def restored(cls, data: dict[str, Any]) -> ArmFigures:
        """From what `learned` gave."""
        figures = cls(
            buyers=int(data.get("buyers", 0)),
            sessions=int(data.get("sessions", 0)),
            converted=int(data.get("converted", 0)),
            orders=int(data.get("orders", 0)),
            amount=float(data.get("amount", 0.0)),
            replies=int(data.get("replies", 0)),
            in_time=int(data.get("in_time", 0)),
        )
        figures.waits.restore(data.get("waits", {}))
        return figures


@dataclass(slots=True)
class Stop:
    """A guardrail stopped an arm: when, which guardrail, and a sentence saying why."""

    at: int
    guardrail: str
    why: str


class Experiment:
    """The experiment a shop file runs: its arms, their figures and the arms stopped."""

    __slots__ = (
        "_bounds",
        "_last",
        "_limits",
        "config",
        "ended_at",
        "figures",
        "name",
        "news",
        "started_at",
        "stopped",
    )

    def __init__(self, config: ExperimentConfig, started_at: int) -> None:
        self.config = config
        self.name = config.name
        self.started_at = started_at
        self.ended_at: int | None = None
        self.figures = {arm: ArmFigures() for arm in config.arms}
        self.stopped: dict[str, Stop] = {}
        self.news: list[str] = []  # arms stopped since the caller last took them
        bounds, upto = [], 0
        for arm in config.arms:
            upto += config.split[arm] * (BUCKETS // 100)
            bounds.append((upto, arm))
        self._bounds = tuple(bounds)
        self._last: tuple[str, str] | None = None  # the last buyer asked for, and its arm
        self._limits = parse_guardrails(config.guardrails)

    def same_test(self, config: ExperimentConfig) -> bool:
        """Whether `config` continues this experiment: same name, arms and split (a
        guardrail may change; anything else starts another experiment)."""
        return (config.name, config.arms, config.split) == (
            self.name,
            self.config.arms,
            self.config.split,
        )

    # ----------------------------------------------------------------------- arms

    def arm_of(self, buyer_id: str) -> str:
        """The buyer's arm. One decision asks it for the same buyer several times (its
        policy, the output's arm, the counts): the last answer is kept for that."""
        last = self._last
        if last is not None and last[0] == buyer_id:
            return last[1]
        bucket = arm_bucket(self.name, buyer_id)
        arm = next((arm for upto, arm in self._bounds if bucket < upto), self._bounds[-1][1])
        self._last = (buyer_id, arm)
        return arm

    def policy_of(self, buyer_id: str) -> str:
        """The policy that picks the buyer's agents: its arm's, or control's once a
        guardrail stopped the arm."""
        arm = self.arm_of(buyer_id)
        if arm in self.stopped:
            arm = CONTROL
        return self.config.arms[arm]

    # ----------------------------------------------------------------------- counting

    def came(self, buyer_id: str, now: int) -> None:
        """An inquiry of the buyer got a session or a place in line (a shop that starts
        with the experiment in its file starts it at its first buyer)."""
        if not self.started_at:
            self.started_at = now
        self.figures[self.arm_of(buyer_id)].buyers += 1

    def opened(self, buyer_id: str, waited_ms: int, now: int) -> None:
        """An inquiry of the buyer opened a session after `waited_ms` in line."""
        figures = self.figures[self.arm_of(buyer_id)]
        figures.sessions += 1
        figures.waits.add(waited_ms)
        self._look(now)

    def ordered(self, buyer_id: str, amount: float, *, first: bool) -> None:
        """An order was credited to a session of the buyer (`first`: its first)."""
        figures = self.figures[self.arm_of(buyer_id)]
        figures.orders += 1
        figures.amount += amount
        if first:
            figures.converted += 1

    def replied(self, buyer_id: str, in_time: bool, now: int) -> None:
        """An agent answered the buyer, within the deadline or not."""
        figures = self.figures[self.arm_of(buyer_id)]
        figures.replies += 1
        figures.in_time += in_time
        self._look(now)

    # ----------------------------------------------------------------------- guardrails

    def _look(self, now: int) -> None:
        """Every CHECK_EVERY counted waits and replies, ask the guardrails about each
        running arm (the intervals stay valid however often they are read, so this is a
        matter of cost)."""
        if not self.config.guardrails:
            return
        if sum(f.sessions + f.replies for f in self.figures.values()) % CHECK_EVERY:
            return
        control = self.figures[CONTROL]
        for arm, figures in self.figures.items():
            if arm != CONTROL and arm not in self.stopped:
                breach = self._breach(figures, control)
                if breach is not None:
                    self.stopped[arm] = Stop(now, breach.guardrail, breach.reason)
                    self.news.append(arm)

    def _breach(self, arm: ArmFigures, control: ArmFigures) -> Breach | None:
        """The first guardrail the arm breaks against control, if any."""
        limits = self._limits
        if limits.p95_wait is not None:
            breach = wait_guardrail(arm.waits, control.waits, limits.p95_wait)
            if breach is not None:
                return breach
        if limits.replies_within_deadline is not None:
            return replies_guardrail(
                arm.in_time, arm.replies, control.in_time, control.replies,
                limits.replies_within_deadline,
            )  # fmt: skip
        return None

    def take_news(self) -> list[str]:
        """The arms stopped since the last call (the shell logs them)."""
        news, self.news = self.news, []
        return news

    # ----------------------------------------------------------------------- storing

    def learned(self) -> dict[str, Any]:
        """As plain data (the shop's meta part keeps it)."""
        return {
            "name": self.name,
            "arms": dict(self.config.arms),
            "split": dict(self.config.split),
            "guardrails": dict(self.config.guardrails),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "figures": {arm: f.learned() for arm, f in self.figures.items()},
            "stopped": {
                arm: {"at": s.at, "guardrail": s.guardrail, "why": s.why}
                for arm, s in self.stopped.items()
            },
        }

    @classmethod
    def restored(cls, data: dict[str, Any]) -> Experiment:
        """From what `learned` gave."""
        config = ExperimentConfig(
            name=data["name"],
            arms=data["arms"],
            split=data["split"],
            guardrails=data.get("guardrails", {}),
        )
        exp = cls(config, int(data["started_at"]))
        exp.take_stored(data)
        return exp

    def take_stored(self, data: dict[str, Any]) -> None:
        """Take the counts, the end and the stopped arms `learned` gave."""
        ended = data.get("ended_at")
        self.ended_at = None if ended is None else int(ended)
        for arm, figures in data.get("figures", {}).items():
            if arm in self.figures:
                self.figures[arm] = ArmFigures.restored(figures)
        for arm, stop in data.get("stopped", {}).items():
            self.stopped[arm] = Stop(int(stop["at"]), str(stop["guardrail"]), str(stop["why"]))

    def with_config(self, config: ExperimentConfig) -> None:
        """Continue under a reloaded `[experiment]` that `same_test` accepts (its
        guardrails may have changed)."""
        self.config = config
        self._limits = parse_guardrails(config.guardrails)


METHOD = (
    "always-valid 95% intervals (mixture SPRT confidence sequences, Johari et al. 2022; "
    "quantiles after Howard and Ramdas 2022): valid however often they are read"
)


def report(exp: Experiment) -> dict[str, Any]:
    """What a person reads of an experiment, as plain data (the API, the console, the
    metrics, `fenliu experiment report` and the lab all show this): per arm its counts,
    conversion (converted sessions / sessions) with its interval, the uplift over control
    in points with its interval (and relative, as a point estimate), p95 wait and the share
    of replies within the deadline with theirs, and whether a guardrail stopped it."""
    control = exp.figures[CONTROL]
    arms = []
    for arm, f in exp.figures.items():
        converted = min(f.converted, f.sessions)  # equal unless a count was lost to a restart
        low, high = proportion_interval(converted, f.sessions)
        wait_low, wait_high = quantile_interval(f.waits, WAIT_QUANTILE)
        reply_low, reply_high = proportion_interval(f.in_time, f.replies)
        stop = exp.stopped.get(arm)
        row: dict[str, Any] = {
            "arm": arm,
            "policy": exp.config.arms[arm],
            "split": exp.config.split[arm],
            "buyers": f.buyers,
            "sessions": f.sessions,
            "converted": converted,
            "orders": f.orders,
            "amount": round(f.amount, 2),
            "conversion": _share(converted, f.sessions, low, high),
            "uplift": None,
            "p95_wait_s": {
                "value": _seconds(f.waits.quantile_ms(WAIT_QUANTILE)),
                "low": _seconds(wait_low),
                "high": _seconds(wait_high),  # None: not bounded yet
            },
            "replies": f.replies,
            "replies_within_deadline": _share(f.in_time, f.replies, reply_low, reply_high),
            "stopped": None
            if stop is None
            else {"at": stop.at, "guardrail": stop.guardrail, "why": stop.why},
        }
        if arm != CONTROL:
            up = uplift(
                converted, f.sessions, min(control.converted, control.sessions), control.sessions
            )
            row["uplift"] = {
                "points": None if up.points is None else round(up.points, 5),
                "low": round(up.low, 5),
                "high": round(up.high, 5),
                "relative": None if up.relative is None else round(up.relative, 4),
            }
        arms.append(row)
    return {
        "name": exp.name,
        "started_at": exp.started_at,
        "ended_at": exp.ended_at,
        "guardrails": dict(exp.config.guardrails),
        "confidence": 1.0 - ALPHA,
        "method": METHOD,
        "arms": arms,
    }


def _share(k: int, n: int, low: float, high: float) -> dict[str, Any]:
    return {
        "value": None if n == 0 else round(k / n, 5),
        "low": round(low, 5),
        "high": round(high, 5),
    }


def _seconds(ms: float | None) -> float | None:
    """Seconds to a tenth; None for no value or an unbounded end."""
    return None if ms is None or ms == float("inf") else round(ms / 1000.0, 1)


# ------------------------------------------------------------------ for a person
# How the report's figures are written wherever a person reads them as text (`fenliu
# experiment report`, `fenliu simulate`); the console writes them alike in its page.


def share_text(share: dict[str, Any]) -> str:
    """A share with its interval, in percent: '10.2% [8.1, 12.6]' ('—' before any count)."""
    value = share["value"]
    shown = "—" if value is None else f"{value * 100:.1f}%"
    return f"{shown} [{share['low'] * 100:.1f}, {share['high'] * 100:.1f}]"


def uplift_text(uplift: dict[str, Any] | None) -> str:
    """The uplift over control in points with its interval, and relative ('—' for control)."""
    if uplift is None:
        return "—"
    points = uplift["points"]
    shown = "—" if points is None else f"{points * 100:+.1f}"
    relative = uplift["relative"]
    tail = "" if relative is None else f" ({relative * 100:+.0f}%)"
    return f"{shown} [{uplift['low'] * 100:+.1f}, {uplift['high'] * 100:+.1f}]{tail}"


def wait_text(wait: dict[str, Any]) -> str:
    """A p95 wait with its interval in seconds; an upper end not bounded yet is '∞'."""
    value, high = wait["value"], wait["high"]
    shown = "—" if value is None else f"{value:g} s"
    return f"{shown} [{wait['low']:g}, {'∞' if high is None else f'{high:g}'}]"


@dataclass(slots=True)
class Experiments:
    """A shop's running experiment, if any, and the finished ones the report still reads."""

    running: Experiment | None = None
    finished: list[Experiment] = field(default_factory=list)

    def configure(self, config: ExperimentConfig | None, now: int, keep_ms: int) -> bool:
        """Follow the shop file: continue the running experiment, end it (its figures kept
        for at least `keep_ms`, the shop's sticky_window), start another. Whether the
        running one changed (the candidates' rankings follow the file anyway)."""
        running = self.running
        if running is not None and config is not None and running.same_test(config):
            running.with_config(config)
            return False
        if running is not None:
            running.ended_at = now
            self.finished.append(running)
        self.running = None if config is None else Experiment(config, now)
        self.finished = [
            e
            for i, e in enumerate(self.finished)
            if e.ended_at is not None
            and (now - e.ended_at < keep_ms or i >= len(self.finished) - FINISHED_KEPT)
        ][-FINISHED_KEPT * 2 :]
        return True

    def policy_of(self, buyer_id: str) -> str | None:
        """The policy of the buyer's arm in the running experiment, or None (the
        candidates' own modes)."""
        running = self.running
        return None if running is None else running.policy_of(buyer_id)

    def learned(self) -> dict[str, Any]:
        """As plain data (the shop's meta part keeps it)."""
        return {
            "running": None if self.running is None else self.running.learned(),
            "finished": [e.learned() for e in self.finished],
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Take what `learned` gave (in place: the shop's parts hold this object)."""
        running = data.get("running")
        self.running = None if running is None else Experiment.restored(running)
        self.finished = [Experiment.restored(e) for e in data.get("finished", [])]
