"""What a simulated shop knows from before the run (`simulate(history="30d")`, the default;
`history="none"` starts from nothing, as the engine of a new shop does).

A real shop has a past that its Redis and its analytics hold: weeks of its agents'
`agent_status` events, and each agent's conversion over a long window (生意参谋), which the
shop feeds to Fenliu as `agent_stats`. A simulated day alone teaches neither, so the runner
gives the engine both. The engine keeps what it learns across the days of a multi-day run,
as the daemon does through Redis.

## Conversion figures (`stats_` functions)

The runner sends them at the start of the run and at each midnight after it (`stats_times`).

- An agent's figure is the share of converted sessions among a plausible number of its
  sessions over the last STATS_DAYS days: the shop's ordinary day of buyers
  (`daily_volume`, returns included) split by the agents' capacity (their caps), times
  STATS_DAYS. Each session converts with the agent's true rate (an average buyer), so the
  figure is a binomial estimate, unbiased and drawn anew every day (big.toml: 2,500 to
  6,700 sessions an agent, median 4,200, so ±0.6 points at a 20% rate). A real figure
  is noisier still (its buyers are not this day's, rates drift); the lab leaves that out.
- Draws come from their own generators, (seed, "history", agent j, day d), so the buyers'
  and agents' draws of the run (daemon.lab.world) are the same with or without history.
- Agents who belong to no group have no sessions and get no figure.

## Agent status (`status_` functions)

Before the scenario starts, the engine is fed the agent-status events of the shop's
previous days. No buyers: only who came online and went offline when. What the past is,
honestly, per scenario:

- `steady`: STATUS_DAYS ordinary days of the same staffing plan, with fresh jitter and
  short suspends;
- `uneven_shifts`: days of the same planner with fresh draws — each day's stretches land
  elsewhere, so the profile only says how capacity tends to arrive, not when today's will;
- `double11` (and `sticky_buildup`): ordinary `steady` days — a shop has no recent Double
  11 behind it, so the estimator meets an unusual day with ordinary habits.

STATUS_DAYS = 28 of the "30d": four whole weeks, so every weekday is seen equally often.
The days end at the local midnight (the scenarios' UTC+8) that begins the scenario's first
day, and every agent is offline then (an agent whose last shift ran to midnight is sent
offline at that moment), so the scenario starts as it does without history. Draws come
from their own generators, (seed, "history", "status", agent j): the scenario's common
random numbers are unchanged. The trace and the measures cover the scenario only (its
agents' online intervals are the scenario's), so no history hour counts in fairness per
online hour.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timedelta

from daemon.core.config import ShopConfig
from daemon.lab.scenarios import (
    HOUR_MS,
    RETURN_ALLOWANCE,
    TZ,
    Planner,
    Scenario,
    consecutive,
    daily_volume,
    grouped_agents,
)
from daemon.lab.scenarios import SCENARIOS as _SCENARIOS
from daemon.lab.world import shift_changes
from topics.events import AgentStatus

HISTORIES = ("30d", "none")
STATS_DAYS = 30
STATUS_DAYS = 28
DAY_MS = 24 * HOUR_MS

StatusChange = tuple[int, str, AgentStatus]  # (epoch ms, agent id, new status)


def stats_sessions(
    shop: ShopConfig, caps: Mapping[str, int | None], session_s: float
) -> dict[str, int]:
    """Each grouped agent's sessions over STATS_DAYS ordinary days (module docstring)."""
    grouped = grouped_agents(shop)
    slots = {a: caps.get(a) or shop.queue.default_cap for a in grouped}
    total = sum(slots.values())
    if not total:
        return {}
    per_day = daily_volume(shop, dict(caps), session_s) * RETURN_ALLOWANCE
    return {a: round(STATS_DAYS * per_day * s / total) for a, s in slots.items()}


def stats_rate(true_rate: float, sessions: int, rng: random.Random) -> float:
    """Converted share of `sessions` sessions that each convert at `true_rate`."""
    converted = sum(1 for _ in range(sessions) if rng.random() < true_rate)
    return round(converted / sessions, 4)


def stats_figures(
    shop: ShopConfig,
    true_rates: Mapping[str, float],
    sessions: Mapping[str, int],
    seed: int,
    day: int,
) -> dict[str, float]:
    """Every agent's analytics figure on `day` (0 = the run's start), in file order."""
    out: dict[str, float] = {}
    for j, conf in enumerate(shop.agents):
        n = sessions.get(conf.id, 0)
        if n > 0 and conf.id in true_rates:
            rng = random.Random(f"{seed}:history:{j}:{day}")
            out[conf.id] = stats_rate(true_rates[conf.id], n, rng)
    return out


def stats_times(scenario: Scenario) -> list[int]:
    """When the figures arrive: the run's start and every midnight (shop time) after it."""
    times = [scenario.start]
    day = datetime.fromtimestamp(scenario.start / 1000, TZ).date() + timedelta(days=1)
    while True:
        midnight = int(datetime(day.year, day.month, day.day, tzinfo=TZ).timestamp() * 1000)
        if midnight >= scenario.end:
            return times
        if midnight > scenario.start:
            times.append(midnight)
        day += timedelta(days=1)


def status_planner(scenario: Scenario) -> Planner:
    """The staffing plan of the shop's ordinary days before `scenario` (module docstring)."""
    base = scenario.name.split("×")[0]
    if base in ("steady", "uneven_shifts"):
        return _SCENARIOS[base].plan
    return _SCENARIOS["steady"].plan


def status_start(scenario: Scenario) -> int:
    """The local midnight (UTC+8) that begins the scenario's first day: history ends here."""
    midnight = scenario.start - (scenario.start + _offset_ms()) % DAY_MS
    return midnight


def _offset_ms() -> int:
    offset = TZ.utcoffset(None)
    assert offset is not None
    return int(offset.total_seconds() * 1000)


def status_history(shop: ShopConfig, scenario: Scenario, seed: int) -> list[StatusChange]:
    """Every agent's status changes of the STATUS_DAYS before `scenario`, in time order,
    ending with everyone offline at `status_start(scenario)`."""
    end = status_start(scenario)
    day = Scenario(
        "history", end - STATUS_DAYS * DAY_MS, 24.0, ((0.0, 1.0),), status_planner(scenario)
    )
    past = consecutive(day, STATUS_DAYS)
    places = grouped_agents(shop)
    changes: list[StatusChange] = []
    for j, conf in enumerate(shop.agents):
        rng = random.Random(f"{seed}:history:status:{j}")
        mine: list[tuple[int, AgentStatus]] = []
        for first, last in past.plan(places.get(conf.id, j), rng):
            mine += shift_changes(past, first, last, rng)
        if mine and mine[-1][1] is not AgentStatus.OFFLINE:
            mine.append((end, AgentStatus.OFFLINE))
        changes += [(at, conf.id, status) for at, status in mine]
    changes.sort(key=lambda change: change[0])
    return changes
