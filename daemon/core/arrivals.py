"""When capacity usually arrives: each agent's shifts and breaks, learned from `agent_status`.

Every agent keeps two sparse profiles, of when it comes online (offline → online: shift
starts, `arrivals`) and of when it goes offline (shift ends, `departures`), by time of week
in bins of BIN_MS (672 a week; only the bins it ever started or ended in are kept, as
`[bin, weight]` pairs in its checkpoint row), and the mean length of its breaks (online →
suspended → online, `pause_ms`). Bins are counted in UTC: the contract has no shop time
zone, and a time-of-week bin in UTC is the same bin in any whole-hour zone, just labelled
differently (only a daylight-saving change shifts a shift by a bin for a while).

Old starts are forgotten slowly: a start `age` ago weighs DECAY_PER_WEEK ** (age / week).
The weights are stored as of `profile_at` (the last start or end recorded), decayed when read,
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
next HORIZON_MS it is at most 1. A suspended agent is expected back after its mean break,
unless its shift usually ends about then (a drain: `_back_from_break`). `expected_capacity`
adds this up over a candidate's offline and suspended members, each weighted by the slots
it brings (its capacity there, less the sessions a returning agent will still hold): the
expected number of slots that come online by each coming moment, which the wait estimate
merges with the known slot times (daemon/core/estimate.py).
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
PAUSE_EWMA = 0.1  # weight of each break ended online in their mean length
DRAIN_MS = 30 * MINUTE_MS  # a break followed by the shift's end within this is a drain
PAUSE_SOON_MS = 30_000  # a break past its mean length ends this soon, if at all
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
    if old is AgentStatus.SUSPENDED and agent.suspended_at >= 0:  # a break ends
        if new is AgentStatus.ONLINE:
            length = float(now - agent.suspended_at)
            first = agent.pause_ms <= 0.0
            agent.pause_ms = (
                length if first else agent.pause_ms + PAUSE_EWMA * (length - agent.pause_ms)
            )
        agent.suspended_at = -1
    if new is AgentStatus.SUSPENDED and old is AgentStatus.ONLINE:
        agent.suspended_at = now
    if new is AgentStatus.OFFLINE:
        agent.offline_at = now
        _count(agent, agent.departures, now)
    elif new is AgentStatus.ONLINE and old is AgentStatus.OFFLINE:
        _count(agent, agent.arrivals, now)


def _count(agent: AgentState, bins: dict[int, float], now: int) -> None:
    """One more start (or end) of a shift at `now` in `bins`: both profiles are decayed to
    `now` first (they share `profile_at`), dropping what fell below FLOOR."""
    factor = _decay(now - agent.profile_at)
    if factor != 1.0:
        for profile in (agent.arrivals, agent.departures):
            for b, w in list(profile.items()):
                if w * factor >= FLOOR:
                    profile[b] = w * factor
                else:
                    del profile[b]
    agent.profile_at = now
    b = week_bin(now)
    bins[b] = bins.get(b, 0.0) + 1.0


def _decay(age_ms: int) -> float:
    return math.exp(-_LAMBDA * max(0, age_ms) / WEEK_MS)


class _Profile:
    """One of an agent's profiles read at `now` (weights decayed, week count known)."""

    __slots__ = ("bins", "factor", "weeks")

    def __init__(self, agent: AgentState, bins: dict[int, float], now: int) -> None:
        self.bins = bins
        self.factor = _decay(now - agent.profile_at)
        span = max(0, now - agent.observed_since)
        self.weeks = (1.0 - _decay(span)) / _LAMBDA

    def chance(self, b: int) -> float:
        """The chance of a start (an end) in week bin `b` in a week (module docstring)."""
        bins, weeks = self.bins, self.weeks
        d = b % DAY_BINS
        day = 0.0
        for k in range(7):
            day += bins.get(d + k * DAY_BINS, 0.0)
        p_day = min(1.0, day * self.factor / (7.0 * weeks))
        p = (bins.get(b, 0.0) * self.factor + DAY_PRIOR_WEEKS * p_day) / (weeks + DAY_PRIOR_WEEKS)
        return min(1.0, p)

    def over(self, start: int, end: int) -> float:
        """The chance summed over [start, end) (parts of bins pro rata)."""
        total = 0.0
        t = start
        while t < end:
            edge = min(end, (t // BIN_MS + 1) * BIN_MS)
            total += self.chance(week_bin(t)) * (edge - t) / BIN_MS
            t = edge
        return total


def agent_outlook(agent: AgentState, now: int) -> list[tuple[int, float]]:
    """(time, chance) of the agent coming online in each coming bin within HORIZON_MS,
    given that it is offline now, or from its break (suspended); empty when nothing is
    expected."""
    if agent.status is AgentStatus.SUSPENDED:
        return _back_from_break(agent, now)
    if agent.status is not AgentStatus.OFFLINE or not agent.arrivals or not _observed(agent, now):
        return []
    profile = _Profile(agent, agent.arrivals, now)
    start = max(now - LOOKBACK_MS, agent.offline_at if agent.offline_at >= 0 else now)
    missed = profile.over(start, now)  # chance already spent since it went offline
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


def _back_from_break(agent: AgentState, now: int) -> list[tuple[int, float]]:
    """A break that began online ends online after the mean length of its past breaks,
    unless it is the end of a shift: the chance that the agent's shift ends (it goes
    offline) from the bin of the break's start to DRAIN_MS after it, from its profile of
    shift ends (whole bins: an end in the break's own bin is as likely before as after
    it). One lasting twice the mean is taken for the end of a shift."""
    since, mean = agent.suspended_at, agent.pause_ms
    if since < 0 or mean <= 0.0 or now - since > 2 * mean or not _observed(agent, now):
        return []
    ending = _Profile(agent, agent.departures, now).over(since - since % BIN_MS, since + DRAIN_MS)
    back = 1.0 - min(1.0, ending)
    if back <= 0.0:
        return []
    return [(max(since + round(mean), now + PAUSE_SOON_MS), back)]


def _observed(agent: AgentState, now: int) -> bool:
    return agent.observed_since >= 0 and now - agent.observed_since >= MIN_OBSERVED_MS


def expected_capacity(
    members: Iterable[tuple[str, int]],
    agents: Mapping[str, AgentState],
    now: int,
    timeout_ms: int,
) -> Coming:
    """Expected slots coming online by each coming bin, over offline or suspended `members`
    (agent id, capacity here); cumulative and increasing in time. Empty if none is expected.
    An agent back from a break brings its capacity less the sessions it still holds then:
    those owing a reply, and the quiet ones whose timeout (`timeout_ms`) is still ahead."""
    per_time: dict[int, float] = {}
    for agent_id, capacity in members:
        agent = agents.get(agent_id)
        if agent is None:
            continue
        for at, p in agent_outlook(agent, now):
            slots = capacity
            if agent.sessions:
                held = agent.pending + sum(1 for t in agent.quiet.values() if t + timeout_ms > at)
                slots = capacity - held
            if slots > 0:
                per_time[at] = per_time.get(at, 0.0) + p * slots
    coming: Coming = []
    total = 0.0
    for at in sorted(per_time):
        total += per_time[at]
        coming.append((at, total))
    return coming
