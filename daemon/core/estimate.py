"""The wait announced with every queue update (`queue_update.estimated_wait_s`).

A queued buyer is served when a slot frees in its group, and slots free when sessions end.
Sessions end by the session timeout (contract §3.2), so the engine knows when each open
session will end if nothing more is said — and roughly how much longer a chat that is still
going will last. The estimate reads those ends instead of assuming sessions end at an
average rate:

    T      = session_timeout
    H      = mean session duration in the candidate (`Stats.handle_time_ms`)
    end(s) = last agent message + T       (the buyer wrote last: now + T), at least now —
             the earliest the session can end; a chat that goes on ends later, but the
             sessions a queued buyer waits for have mostly been quiet for minutes and
             will end then: in the lab, reading every open session's true end instead
             changes the error by under 1% (BENCHMARKS.md), so no chat model is kept
    slots  = for each online member agent at or over its cap, the ends of its sessions
             but the first load − cap (those only bring it back to its cap): each later
             end frees a slot; all sorted, the moments the candidate's next slots free
             (kept as an index per candidate, `daemon/core/slots.py`: O(log n) to read,
             so an estimate costs the same with 10,000 sessions open as with 10)
    q(j)   = the chance the buyer j in line is still there when its turn comes: S(w + m)
             / S(w), w its time in line, m until its own last announced moment of
             service (`QueueEntry.last_eta`), S the candidate's learned patience
             (daemon/core/patience.py: hazard of leaving by time in line, from exits);
             Q(n) = q summed over the first n in line, once per outlook (`stays_ahead`)
    stay   = the share of a queue's buyers who stayed until served, of those who left it
             lately (`Stats.observe_exit`: an EWMA): q where nobody has left yet
    rivals = the other candidates with buyers in line that share online agents with this
             one; share(R) = the part of R's online capacity (Σ caps) those agents hold.
             A freed slot goes to the oldest head among the queues of its agent's
             candidates (`Queues.drain`), so R's older buyers take some of our slots
    ahead  = round(Q(k − 1) + Σ_R share(R) · Q_R(older(R)))
             for the buyer at 1-based position k; older(R) = R's buyers served before
             it in that order (the line's, `QueueItem`: higher effective priority,
             or equal and earlier)
    need   = ahead + 1 − free slots
    coming = the expected slots of offline and suspended members coming online
             (`daemon/core/arrivals.py`: each agent's learned shift starts by time of week,
             and its breaks' usual length unless its shift usually ends then), cumulative
             by the moment they are expected, over the next two hours: E(t)
    known  = the k-th slot time:  slots[k − 1]  if k ≤ L = len(slots),
             else slots[(k − 1) mod L] + H·⌊(k − 1)/L⌋ (each slot frees again every H)
    wait   = 0                                           if need ≤ 0
           = the first t ≥ now with (slots freed by t) + E(t) + COUNT_FROM ≥ need, i.e.
             the earlier of: the moment E(t) brings the known slots still needed,
             ⌈need − E(t) − COUNT_FROM⌉, down to 0, and that many known slots' time
           = `by_rate` (below, at position ahead + 1), or the last
             expected arrival if later,             if no agent is online at its cap and
                                                    the arrivals do not suffice
    Without expected arrivals (no history, everyone online) it is `known(need) − now`.
    E has at most one point per 15-minute bin of the horizon (9) plus one per member on a
    break; it is computed once a minute per candidate with a line (`Capacity.coming`, cached
    on the candidate) and each estimate walks it: O(points · log n). Q costs O(line) at a queue
    tick (which announces the whole line anyway); a buyer joining reads Q over at most
    EXACT_AHEAD buyers of each line and counts those behind at the flat `stay`, so joining
    costs the same with 5,000 in line as with 50. Each estimate is then O(log n).

The rate-based fallback, `by_rate`, for the buyer at 1-based position k when no member agent
is online at its cap (so no session end is known to wait for):

    free   = free slots of eligible agents (Σ cap − load; "unbounded" without queueing)
    busy   = open sessions of online member agents, each counted up to its cap
    need   = k − free                    (session ends needed before this buyer is served)
    wait   = 0                               if need ≤ 0
           = need · H / busy                 if busy > 0  (sessions end at rate busy / H)
           = H · ⌈k / total member cap⌉      otherwise (nobody online or working: at
                                             least one handle time, more for long lines)

It does not know which buyers ahead will give up, only how likely each is to by then;
agents coming online or going on a break it knows only as a habit (errs either way on a
day unlike the ones it learned from). `fenliu simulate` measures its error against two
baselines (BENCHMARKS.md, "Wait estimates that know who is coming").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

from daemon.core.arrivals import Coming
from daemon.core.candidate import Candidate
from daemon.core.model import AgentState, Buyer, QueueItem
from daemon.core.slots import SlotTimes

COUNT_FROM = 0.5  # an expected arrival counts once this much of a slot is expected
EXACT_AHEAD = 8  # buyers of a line one joining buyer's estimate asks whether they stay

# imported at run time, not only for the type checker: the compiled core (mypyc) needs the
# modules of the native classes `Outlook` holds loaded first, else importing this module
# alone crashed the interpreter
Rival = tuple[Candidate, float, list[float]]  # (candidate, share, its `stays_ahead`)


@dataclass(slots=True)
class Outlook:
    """What a candidate's estimates read, taken once for all its queued buyers."""

    now: int  # epoch ms
    seed_ms: int  # `queue.avg_handle_time`: the handle time before sessions are observed
    times: SlotTimes  # when the candidate's next slots free (epoch ms, earliest first)
    rivals: list[Rival]  # queues sharing online agents, with that share and their stays
    coming: Coming  # expected slots of offline members online by each coming time
    stays: list[float]  # [j]: expected stayers among the first j in line (empty: use stay)


def outlook(
    cand: Candidate,
    neighbours: Sequence[Candidate],
    agents: Mapping[str, AgentState],
    buyers: Mapping[str, Buyer],
    now: int,
    timeout_ms: int,
    seed_ms: int,
    limit: int | None = None,
    leavers: frozenset[str] | None = None,
) -> Outlook:
    """The slot times and rival queues of `cand` now; see the module docstring.

    `neighbours` are the candidates sharing agents with `cand`, `timeout_ms` the session
    timeout; `limit` bounds how many buyers of each line are asked whether they will stay
    (None: all; the rest count at the flat share, see `stays_ahead`); `leavers` is the
    policy lab's hindsight (`stays_ahead`)."""
    times = cand.slots.times(cand.caps, agents, now, timeout_ms)
    view = cand.capacity.coming(cand.caps, agents, now, timeout_ms)
    others = [
        (rival, share, stays_ahead(rival, buyers, now, limit, leavers))
        for rival, share in rivals(cand, neighbours)
    ]
    stays = stays_ahead(cand, buyers, now, limit, leavers)
    return Outlook(now, seed_ms, times, others, view, stays)


def stays_ahead(
    cand: Candidate,
    buyers: Mapping[str, Buyer],
    now: int,
    limit: int | None = None,
    leavers: frozenset[str] | None = None,
) -> list[float]:
    """Prefix sums over the first `limit` (None: all) of `cand`'s line of the chance each
    buyer is still there at its own announced time of service (daemon/core/patience.py);
    empty until anyone left. A queue tick announces every buyer, so it reads the whole line
    (O(line), like the announcements); one buyer's estimate (joining the line) reads at
    most EXACT_AHEAD of each line, so joining costs the same with 5,000 in line as with 50,
    and counts the buyers behind those at the line's flat share (`stayers`).

    `leavers` (the policy lab's hindsight, `Queues.leavers`; the daemon never has it): the
    inquiries that will leave their line unserved. A buyer then counts 1 or 0 as it will
    really stay or not, whatever the learned patience says."""
    survival = cand.stats.read_patience()
    if leavers is None and not survival.known:
        return []
    sums = [0.0]
    total = 0.0
    # itertools.islice walks the sorted list's sublists in C; its own islice is Python
    queue = cand.line.items if limit is None else islice(cand.line.items, limit)
    for item in queue:
        entry = buyers[item.buyer_id].queued
        if leavers is not None:
            total += 0.0 if entry is not None and entry.inquiry_id in leavers else 1.0
        else:
            more = (entry.last_eta - now) / 1000.0 if entry is not None and entry.last_eta else 0.0
            total += survival.stays((now - item.arrival) / 1000.0, more)
        sums.append(total)
    return sums


def rivals(cand: Candidate, neighbours: Sequence[Candidate]) -> list[tuple[Candidate, float]]:
    """Other candidates with buyers in line that share online agents with `cand`, each with
    the share of its online capacity those agents hold (kept up to date by Routing)."""
    shares = cand.capacity.shared
    return [
        (rival, shared / rival.capacity.online_weight)
        for rival in neighbours
        if rival.line.items and (shared := shares.get(rival.key, 0))
    ]


def ahead(
    cand: Candidate, position: int, item: QueueItem, rivals: list[Rival], stays: list[float]
) -> int:
    """Buyers expected to be served from `cand`'s slots before the buyer at `position`."""
    expected = stayers(stays, position - 1, cand.stats.stay)
    for rival, share, theirs in rivals:
        older = rival.line.position(item) - 1
        expected += share * stayers(theirs, older, rival.stats.stay)
    return round(expected)


def stayers(stays: list[float], n: int, stay: float) -> float:
    """Expected stayers among the first `n` in line: the prefix sums of `stays_ahead` as far
    as they go, the flat share `stay` for each buyer beyond."""
    if not stays:
        return n * stay
    last = len(stays) - 1
    if n <= last:
        return stays[n]
    return stays[last] + (n - last) * stay


def estimate_s(cand: Candidate, position: int, item: QueueItem, view: Outlook) -> int:
    """Seconds until the buyer at `position` (queue item `item`) is served."""
    before = ahead(cand, position, item, view.rivals, view.stays)
    need = before + 1 - cand.capacity.free_slots
    if need <= 0:
        return 0
    times = view.times
    if view.coming:
        return _with_arrivals(cand, need, before, view)
    if not times:
        return by_rate(cand, before + 1, view.seed_ms)
    return _seconds(_known(times, need, cand.stats.handle_time_ms(view.seed_ms)), view.now)


def by_rate(cand: Candidate, position: int, seed_ms: int) -> int:
    """Seconds until the buyer at `position` is served, with sessions ending at the rate
    its busy slots give (the fallback of the module docstring)."""
    handle = cand.stats.handle_time_ms(seed_ms)
    capacity = cand.capacity
    need = position - capacity.free_slots
    if need <= 0:
        return 0
    if capacity.busy_slots > 0:
        return round(need * handle / capacity.busy_slots / 1000)
    return round(handle * math.ceil(position / max(1, cand.total_cap)) / 1000)


def _known(times: SlotTimes, k: int, handle: float) -> float:
    """When the k-th (1-based) known slot frees; each slot frees again every `handle`."""
    rounds, index = divmod(k - 1, len(times))
    return times[index] + rounds * handle


def _seconds(at: float, now: int) -> int:
    return max(0, round((at - now) / 1000))


def _with_arrivals(cand: Candidate, need: int, before: int, view: Outlook) -> int:
    """The first moment the known slots plus the expected arrivals reach `need` (counting an
    expected slot from COUNT_FROM of it: the estimate aims at the middle, not the worst)."""
    times, now = view.times, view.now
    handle = cand.stats.handle_time_ms(view.seed_ms)
    since, expected = float(now), 0.0
    for at, total in view.coming:  # from `since` until `at`, `expected` slots have come
        k = math.ceil(need - expected - COUNT_FROM)
        if k <= 0:
            return _seconds(since, now)
        if times:
            known = _known(times, k, handle)
            if known < at:
                return _seconds(max(known, since), now)
        since, expected = float(at), total
    k = math.ceil(need - expected - COUNT_FROM)
    if k <= 0:
        return _seconds(since, now)
    if times:
        return _seconds(max(_known(times, k, handle), since), now)
    return max(_seconds(since, now), by_rate(cand, before + 1, view.seed_ms))
