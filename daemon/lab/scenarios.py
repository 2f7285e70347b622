"""The simulated days: when buyers arrive and when each agent works.

A scenario is an arrival curve (piecewise linear, in units where an ordinary day averages
1) and a shift planner. Every agent gets a shift pattern from its place in its first group,
so each group is staffed around the clock the same way whatever its size:

    place % 8   0  1  2  3  4  5  6  7
    shift       B  A  C  N  B  A  C  B     A 08:00–17:00, B 10:00–22:00, C 15:00–24:00,
                                           N 00:00–08:30 (night); starts and ends jitter
                                           by up to 15 minutes per agent

- `steady`: an ordinary day (00:00–24:00): quiet at night, a late-morning peak (10–12h)
  and the evening peak (20–22h, about 8% of the day's buyers per hour).
- `double11`: 22:00 on 10 November to 22:00 on the 11th. The eve runs at ~1.2× an
  ordinary evening; in the four minutes around midnight the rate jumps to ~4.7× the
  ordinary peak and holds for 45 minutes, then decays over two hours; the day runs at ~2×
  an ordinary day and the evening at ~2.4× its peak. Every agent works the midnight rush
  (22:00–02:00), night agents until 08:00, the others a day shift after it. About 2.7× the
  buyers of a `steady` day.
- `uneven_shifts`: the `steady` curve; the first agent of each group works 08:00–24:00,
  night agents keep their night, every other agent works one stretch of 3 to 12 hours
  at a random time between 08:00 and 24:00.
- `sticky_buildup`: three days. On days 1 and 2 (half an ordinary day's buyers each) only
  every other agent of each group (places 0, 2, 4, ...) works, 08:00–24:00; on day 3 (an
  ordinary day) everyone works the usual pattern. Buyers of the first two days come back
  within the sticky window and find the agents who served them.

`consecutive(scenario, days)` plays a one-day scenario several days in a row: the arrival
curve repeats, and every agent's shifts are drawn again for each day (jitter and short
suspends come from the agent's own generator, so day 2 is not a copy of day 1).
A shift that ends at midnight then drains and goes offline like any other, and the night
shift starts the next day; buyers come back across days (bench/week.py runs `steady` for a
week).

Volume: an ordinary day brings `daily_volume(shop)` first inquiries (returns come on
top): 360 per agent who belongs to a group, but no more than the shop's agents can serve
at the evening peak at 85% of their caps (each session holding a slot for a chat plus
`queue.session_timeout`), so a lightly staffed shop gets an ordinary day too.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from daemon.core.config import ShopConfig

TZ = timezone(timedelta(hours=8), "UTC+8")
HOUR_MS = 3_600_000
MINUTE_MS = 60_000

# Relative buyers per hour of an ordinary day, 00h to 23h.
STEADY_HOURLY: tuple[float, ...] = (
    *(3, 1.5, 0.8, 0.5, 0.4, 0.5, 1, 2, 4, 6, 7.5, 7.5),  # 00h-11h
    *(5.5, 5.5, 6, 6, 5.5, 5, 5, 6, 8, 8.5, 7, 5),  # 12h-23h
)
_MEAN = sum(STEADY_HOURLY) / 24

FIRST_PER_AGENT = 360  # first inquiries per grouped agent on an ordinary day
PEAK_UTILISATION = 0.85  # offered load at the evening peak / online capacity
RETURN_ALLOWANCE = 1.15  # returns add about this factor on top of first inquiries

SHIFTS: dict[str, tuple[float, float]] = {
    "A": (8.0, 17.0),
    "B": (10.0, 22.0),
    "C": (15.0, 24.0),
    "N": (0.0, 8.5),
}
PLAN = "BACNBACB"
JITTER_H = 0.25

Interval = tuple[float, float]  # hours from the scenario's start
Planner = Callable[[int, random.Random], list[Interval]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A simulated stretch of time: arrival curve and shifts (module docstring)."""

    name: str
    start: int  # epoch ms
    hours: float
    knots: tuple[tuple[float, float], ...]  # (hours from start, relative rate)
    plan: Planner  # (place in the agent's first group, the agent's rng) -> shifts

    @property
    def end(self) -> int:
        """Epoch ms of the scenario's end."""
        return self.start + round(self.hours * HOUR_MS)

    def rate(self, hours: float) -> float:
        """Relative arrival rate at `hours` from the start (1 = an ordinary day's mean)."""
        knots = self.knots
        i = bisect.bisect_right(knots, (hours, math.inf))
        if i == 0:
            return knots[0][1]
        if i == len(knots):
            return knots[-1][1]
        (h0, r0), (h1, r1) = knots[i - 1], knots[i]
        return r0 + (r1 - r0) * (hours - h0) / (h1 - h0)

    def arrivals(self, rng: random.Random, per_day: float) -> list[int]:
        """Arrival times (epoch ms) of first inquiries, `per_day` on an ordinary day."""
        top = max(r for _, r in self.knots)
        per_hour_top = per_day / 24 * top
        if per_hour_top <= 0:
            return []
        times: list[int] = []
        hours = 0.0
        while True:  # thinning of a Poisson process at the top rate
            hours += rng.expovariate(per_hour_top)
            if hours >= self.hours:
                return times
            if rng.random() * top < self.rate(hours):
                times.append(self.start + round(hours * HOUR_MS))


def _at(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=TZ).timestamp() * 1000)


def _hourly_knots(weights: tuple[float, ...], offset: float = 0.0) -> list[tuple[float, float]]:
    """Knots at each hour's middle, with flat ends."""
    knots = [(offset, weights[0] / _MEAN)]
    knots += [(offset + h + 0.5, w / _MEAN) for h, w in enumerate(weights)]
    knots.append((offset + len(weights), weights[-1] / _MEAN))
    return knots


def _jitter(shift: Interval, rng: random.Random, lo: float, hi: float) -> Interval:
    start = shift[0] + rng.uniform(-JITTER_H, JITTER_H)
    end = shift[1] + rng.uniform(-JITTER_H, JITTER_H)
    start = lo if shift[0] <= lo else max(lo, start)
    end = hi if shift[1] >= hi else min(hi, end)
    return (start, end)


def _usual(place: int, rng: random.Random, day: int = 0) -> Interval:
    offset = 24.0 * day
    lo, hi = SHIFTS[PLAN[place % len(PLAN)]]
    return _jitter((offset + lo, offset + hi), rng, offset, offset + 24.0)


def _plan_steady(place: int, rng: random.Random) -> list[Interval]:
    return [_usual(place, rng)]


def _plan_uneven(place: int, rng: random.Random) -> list[Interval]:
    if place == 0:
        return [(8.0, 24.0)]
    if PLAN[place % len(PLAN)] == "N":
        return [_usual(place, rng)]
    length = rng.choice((3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0))
    start = rng.uniform(8.0, 24.0 - length)
    return [(start, start + length)]


def _plan_sticky(place: int, rng: random.Random) -> list[Interval]:
    early = [(8.0, 24.0), (32.0, 48.0)] if place % 2 == 0 else []
    return [*early, _usual(place, rng, day=2)]


# double11 starts at 22:00 on the 10th: hour h of the 11th is h + 2 from the start.
_D11 = 2.0


def _plan_double11(place: int, rng: random.Random) -> list[Interval]:
    letter = PLAN[place % len(PLAN)]
    if letter == "N":
        return [_jitter((0.0, _D11 + 8.0), rng, 0.0, 24.0)]
    rush = _jitter((0.0, _D11 + 2.0), rng, 0.0, 24.0)
    day = {"A": (8.0, 17.0), "B": (10.0, 22.0), "C": (14.0, 22.0)}[letter]
    return [rush, _jitter((_D11 + day[0], _D11 + day[1]), rng, rush[1] + 0.5, 24.0)]


_D11_WEIGHTS = (  # (hour of the 11th, relative buyers per hour in STEADY_HOURLY's units)
    (-2.0, 8.0),
    (-0.25, 10.0),
    (-0.03, 12.0),
    (0.03, 40.0),
    (0.75, 40.0),
    (1.5, 22.0),
    (2.5, 8.0),
    (3.5, 3.0),
    (5.0, 2.0),
    (7.0, 3.5),
    (8.5, 8.0),
    (10.5, 15.0),
    (11.5, 15.0),
    (12.5, 11.0),
    (14.0, 12.0),
    (16.5, 11.0),
    (18.0, 10.0),
    (19.5, 14.0),
    (20.5, 20.0),
    (21.5, 20.0),
    (22.0, 16.0),
)

SCENARIOS: dict[str, Scenario] = {
    "steady": Scenario(
        "steady", _at(2025, 6, 10), 24.0, tuple(_hourly_knots(STEADY_HOURLY)), _plan_steady
    ),
    "double11": Scenario(
        "double11",
        _at(2025, 11, 10, 22),
        24.0,
        tuple((h + _D11, w / _MEAN) for h, w in _D11_WEIGHTS),
        _plan_double11,
    ),
    "uneven_shifts": Scenario(
        "uneven_shifts", _at(2025, 6, 10), 24.0, tuple(_hourly_knots(STEADY_HOURLY)), _plan_uneven
    ),
    "sticky_buildup": Scenario(
        "sticky_buildup",
        _at(2025, 6, 8),
        72.0,
        tuple(
            _hourly_knots(tuple(w * 0.5 for w in STEADY_HOURLY))[:-1]
            + _hourly_knots(tuple(w * 0.5 for w in STEADY_HOURLY), 24.0)[1:-1]
            + _hourly_knots(STEADY_HOURLY, 48.0)[1:]
        ),
        _plan_sticky,
    ),
}


def consecutive(scenario: Scenario, days: int) -> Scenario:
    """A one-day scenario played `days` days in a row (module docstring); ValueError if
    `days` is below 1 or the scenario is not 24 hours long."""
    if days < 1:
        raise ValueError(f"days must be 1 or more, not {days!r}")
    if scenario.hours != 24.0:
        raise ValueError(
            f"scenario {scenario.name!r} lasts {scenario.hours:g} hours: only a one-day "
            "scenario can be played several days in a row"
        )
    if days == 1:
        return scenario
    day_plan = scenario.plan

    def plan(place: int, rng: random.Random) -> list[Interval]:
        return [
            (first + 24.0 * day, last + 24.0 * day)
            for day in range(days)
            for first, last in day_plan(place, rng)
        ]

    knots = tuple((h + 24.0 * day, r) for day in range(days) for h, r in scenario.knots)
    return Scenario(f"{scenario.name}×{days}", scenario.start, 24.0 * days, knots, plan)


def find_scenario(name: str) -> Scenario:
    """A scenario by name; ValueError listing the known ones."""
    found = SCENARIOS.get(name)
    if found is None:
        raise ValueError(f"unknown scenario {name!r}: use one of {', '.join(SCENARIOS)}")
    return found


def grouped_agents(shop: ShopConfig) -> dict[str, int]:
    """Every agent a group lists -> its place in its first group (file order)."""
    places: dict[str, int] = {}
    for group in shop.groups:
        for place, agent_id in enumerate(group.agents):
            places.setdefault(agent_id, place)
    return places


def daily_volume(shop: ShopConfig, caps: dict[str, int | None], session_s: float) -> float:
    """First inquiries of an ordinary day for this shop (module docstring).

    `caps` are the agents' effective caps (None: uncapped, counted as
    `queue.default_cap`); `session_s` how long a session holds a slot on average.
    """
    places = grouped_agents(shop)
    peaks = []
    for hour in (11.0, 21.0):
        slots = 0
        for agent_id, place in places.items():
            lo, hi = SHIFTS[PLAN[place % len(PLAN)]]
            if lo <= hour < hi:
                slots += caps.get(agent_id) or shop.queue.default_cap
        peaks.append(slots)
    per_hour = min(peaks) * 3600.0 / session_s * PEAK_UTILISATION / RETURN_ALLOWANCE
    peak_share = max(STEADY_HOURLY) / sum(STEADY_HOURLY)
    return min(FIRST_PER_AGENT * len(places), per_hour / peak_share)
