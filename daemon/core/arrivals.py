"""When capacity usually arrives: each agent's shift starts, learned from `agent_status`.

Every agent keeps a sparse profile of when it comes online (offline → online), by time of
week in bins of BIN_MS (672 a week; only the bins it ever started in are kept, as
`[bin, weight]` pairs in its checkpoint row). Bins are counted in UTC: the contract has no
shop time zone, and a time-of-week bin in UTC is the same bin in any whole-hour zone, just
labelled differently (only a daylight-saving change shifts a shift by a bin for a while).

Old starts are forgotten slowly: a start `age` ago weighs DECAY_PER_WEEK ** (age / week).
The weights are stored as of `arrivals_at` (the last start recorded) and decayed when read,
so recording a start costs O(bins of that agent) and reading costs nothing extra.

The chance that the agent starts in week bin b, in a week, shrinks the time-of-week figure
toward the time-of-day one (the same quarter hour on any day), which needs only days of
data, with DAY_PRIOR_WEEKS pseudo-weeks:

    n_w     = weeks observed since the agent's first status change, decayed alike:
              (1 − DECAY^(span/week)) / −ln DECAY
    w(b)    = decayed starts in week bin b;  w_day(d) = Σ over the 7 days of w(d + 96·k)
    p_day   = w_day(d) / (7·n_w), at most 1
    p(b)    = (w(b) + K·p_day) / (n_w + K), at most 1         K = DAY_PRIOR_WEEKS

Nothing is predicted before MIN_OBSERVED_MS of observation (a day: so the same day's starts
never count as a habit). For an agent offline now, the starts its profile expected since it
went offline (at most LOOKBACK_MS ago) did not happen; the chance of a start in each coming
bin is taken given that (divided by what is left of the day's chance), and summed over the
next HORIZON_MS it is at most 1. `expected_capacity` adds this up over a candidate's offline
members, each weighted by its capacity there: the expected number of slots that come online
by each coming bin, which the wait estimate merges with the known slot times
(daemon/core/estimate.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from daemon.core.model import AgentState
from topics.events import AgentStatus

MINUTE_MS = 60_000
BIN_MS = 15 * MINUTE_MS
DAY_MS = 24 * 60 * MINUTE_MS
WEEK_MS = 7 * DAY_MS
DAY_BINS = DAY_MS // BIN_MS  # 96
WEEK_BINS = WEEK_MS // BIN_MS  # 672
DECAY_PER_WEEK = 0.9  # weight of a shift start a week old, against one of today
DAY_PRIOR_WEEKS = 2.0  # pseudo-weeks of the time-of-day figure in the time-of-week one
MIN_OBSERVED_MS = DAY_MS  # no prediction from less than a day of status changes
HORIZON_MS = 2 * 60 * MINUTE_MS  # how far ahead arrivals are counted
LOOKBACK_MS = 2 * 60 * MINUTE_MS  # expected starts missed since going offline, at most
FLOOR = 0.01  # decayed weights below this are dropped (the profile stays sparse)
_LAMBDA = -math.log(DECAY_PER_WEEK)

Coming = list[tuple[int, float]]  # (epoch ms, expected slots online by then), increasing


def week_bin(now: int) -> int:
    """The time-of-week bin (UTC) of an epoch-ms instant."""
    return (now // BIN_MS) % WEEK_BINS


def record_status(agent: AgentState, old: AgentStatus, new: AgentStatus, now: int) -> None:
    """Learn from one real status change of `agent` (old → new at `now`)."""
    if agent.observed_since < 0:
        agent.observed_since = now
    if new is AgentStatus.OFFLINE:
        agent.offline_at = now
    elif new is AgentStatus.ONLINE and old is AgentStatus.OFFLINE:
        factor = _decay(now - agent.arrivals_at) if agent.arrivals else 1.0
        kept = {b: w * factor for b, w in agent.arrivals.items() if w * factor >= FLOOR}
        b = week_bin(now)
        kept[b] = kept.get(b, 0.0) + 1.0
        agent.arrivals = kept
        agent.arrivals_at = now


def _decay(age_ms: int) -> float:
    return math.exp(-_LAMBDA * max(0, age_ms) / WEEK_MS)


class _Profile:
    """One agent's profile read at `now` (weights decayed, week count known)."""

    __slots__ = ("bins", "factor", "weeks")

    def __init__(self, agent: AgentState, now: int) -> None:
        self.bins = agent.arrivals
        self.factor = _decay(now - agent.arrivals_at)
        span = max(0, now - agent.observed_since)
        self.weeks = (1.0 - _decay(span)) / _LAMBDA

    def chance(self, b: int) -> float:
        """The chance of a start in week bin `b` in a week (module docstring)."""
        bins, weeks = self.bins, self.weeks
        d = b % DAY_BINS
        day = 0.0
        for k in range(7):
            day += bins.get(d + k * DAY_BINS, 0.0)
        p_day = min(1.0, day * self.factor / (7.0 * weeks))
        p = (bins.get(b, 0.0) * self.factor + DAY_PRIOR_WEEKS * p_day) / (weeks + DAY_PRIOR_WEEKS)
        return min(1.0, p)


def agent_outlook(agent: AgentState, now: int) -> list[tuple[int, float]]:
    """(time, chance) of the agent coming online in each coming bin within HORIZON_MS,
    given that it is offline now; empty when its profile predicts nothing."""
    if (
        agent.status is not AgentStatus.OFFLINE
        or not agent.arrivals
        or agent.observed_since < 0
        or now - agent.observed_since < MIN_OBSERVED_MS
    ):
        return []
    profile = _Profile(agent, now)
    missed = 0.0
    start = max(now - LOOKBACK_MS, agent.offline_at if agent.offline_at >= 0 else now)
    t = start
    while t < now:  # chance already spent since it went offline (no start came)
        edge = min(now, (t // BIN_MS + 1) * BIN_MS)
        missed += profile.chance(week_bin(t)) * (edge - t) / BIN_MS
        t = edge
    left = max(0.05, 1.0 - missed)
    out: list[tuple[int, float]] = []
    total = 0.0
    t, end = now, now + HORIZON_MS
    while t < end and total < 1.0:
        edge = min(end, (t // BIN_MS + 1) * BIN_MS)
        p = profile.chance(week_bin(t)) * (edge - t) / BIN_MS / left
        if p > 0.0:
            p = min(p, 1.0 - total)
            total += p
            out.append(((t + edge) // 2, p))
        t = edge
    return out


def expected_capacity(
    members: Iterable[tuple[str, int]], agents: Mapping[str, AgentState], now: int
) -> Coming:
    """Expected slots coming online by each coming bin, over offline `members` (agent id,
    capacity here); cumulative and increasing in time. Empty if none is expected."""
    per_time: dict[int, float] = {}
    for agent_id, capacity in members:
        agent = agents.get(agent_id)
        if agent is None or not agent.arrivals:
            continue
        for at, p in agent_outlook(agent, now):
            per_time[at] = per_time.get(at, 0.0) + p * capacity
    coming: Coming = []
    total = 0.0
    for at in sorted(per_time):
        total += per_time[at]
        coming.append((at, total))
    return coming
