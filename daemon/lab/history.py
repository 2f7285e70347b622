"""What a simulated shop knows from before the run (`simulate(history="30d")`, the default).

A real shop has history: its analytics (生意参谋) report each agent's conversion over a
long window, and the shop feeds it to Fenliu as `agent_stats`. The runner sends those
figures at the start of the run and at each midnight after it (`stats_times`); the engine
keeps what it learns across the days of a multi-day run, as the daemon does through Redis.
`history="none"` starts from nothing (the engine learns from the run's own orders).

The `stats_` functions are the agents' conversion figures:

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
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timedelta

from daemon.core.config import ShopConfig
from daemon.lab.scenarios import RETURN_ALLOWANCE, TZ, Scenario, daily_volume, grouped_agents

HISTORIES = ("30d", "none")
STATS_DAYS = 30


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
