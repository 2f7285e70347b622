"""The simulated shop's past: what its Redis would hold before the simulated day.

A real shop's engine has seen weeks of its agents' `agent_status` events; a simulated day
alone teaches nothing by time of week. With `simulate(..., history="30d")` the engine is
fed, before the scenario starts, the agent-status events of the shop's previous days
(`status_` functions here; the `stats_` ones give `agent_stats` history). No buyers: only
who came online and went offline when.

What the past is, honestly, per scenario:

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

from daemon.core.config import ShopConfig
from daemon.lab.scenarios import HOUR_MS, TZ, Planner, Scenario, consecutive, grouped_agents
from daemon.lab.scenarios import SCENARIOS as _SCENARIOS
from daemon.lab.world import shift_changes
from topics.events import AgentStatus

HISTORIES = ("30d", "none")
STATUS_DAYS = 28
DAY_MS = 24 * HOUR_MS

StatusChange = tuple[int, str, AgentStatus]  # (epoch ms, agent id, new status)


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
