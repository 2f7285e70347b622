"""How long a candidate's buyers wait in line before they give up, learned from queue exits.

The wait estimate counts the buyers ahead who will still be there when a slot frees
(daemon/core/estimate.py). A share of leavers alone (`Stats.stay`) cannot tell a buyer
who has just joined from one who has waited five minutes, nor a short wait ahead from a
long one; the chance of giving up depends on both. So each candidate learns the hazard of
leaving by time in line, in bins of EDGES_S (the last one open-ended):

    leaves(b)  = buyers who left (`leave`) after a time in line within bin b
    risk(b)    = seconds all exits spent in line within bin b (left, served, expired or
                 moved on alike: a buyer served after 70 s was at risk for 70 s)
    h(b)       = leaves(b) / risk(b)                                  (per second)
    S(t)       = exp(−Σ_b h(b) · |[0, t) ∩ b|)        the chance to still wait at t
    stays(w, m) = S(w + m) / S(w)     a buyer in line for w is still there m later

Both figures are EWMAs over exits (each exit weighs PATIENCE_EWMA, older ones decay), so the
estimate follows a change of crowd within a few hundred exits; the 2·BINS numbers are part
of a candidate's learned statistics (daemon/core/stats.py), checkpointed with the rest
(`candidate.runtime_of`). Until anyone leaves, every h is 0 and everyone stays, as before.
A buyer ahead is asked to stay until its own announced time of service (`QueueEntry.last_eta`):
computed once per outlook for the whole line (`stays_ahead`), so each estimate reads a prefix
sum.
"""

from __future__ import annotations

import math

# typed `tuple[float, ...]`: mypyc would keep a fixed-length tuple unboxed and build a new
# Python tuple each time it is indexed by a variable (every bin lookup of an estimate)
EDGES_S: tuple[float, ...] = (15.0, 30.0, 60.0, 90.0, 120.0, 180.0, 240.0, 360.0, 480.0, 720.0)
BINS = len(EDGES_S) + 1
PATIENCE_EWMA = 0.01  # weight of each queue exit
_LOWS: tuple[float, ...] = (0.0, *EDGES_S)


def new_patience() -> list[float]:
    """Nothing learned: leaves by bin, then seconds at risk by bin, all 0."""
    return [0.0] * (2 * BINS)


def observe(patience: list[float], waited_ms: int, left: bool) -> None:
    """One exit from the line after `waited_ms` in it; `left`: the buyer gave up."""
    keep = 1.0 - PATIENCE_EWMA
    for i in range(len(patience)):
        patience[i] *= keep
    waited = max(0.0, waited_ms / 1000.0)
    for b in range(BINS):
        low = _LOWS[b]
        if waited <= low:
            break
        high = EDGES_S[b] if b < BINS - 1 else math.inf
        patience[BINS + b] += PATIENCE_EWMA * (min(waited, high) - low)
        if left and waited <= high:
            patience[b] += PATIENCE_EWMA


class Survival:
    """`patience` read once: the cumulative hazard at each bin's lower edge."""

    __slots__ = ("_cum", "_rates", "known")

    def __init__(self, patience: list[float]) -> None:
        rates = []
        for b in range(BINS):
            risk = patience[BINS + b]
            rates.append(patience[b] / risk if risk > 0.0 else 0.0)
        cum = [0.0]
        for b in range(BINS - 1):
            cum.append(cum[-1] + rates[b] * (EDGES_S[b] - _LOWS[b]))
        self._rates, self._cum = rates, cum
        self.known = any(r > 0.0 for r in rates)  # anyone ever left

    def hazard(self, t: float) -> float:
        """Cumulative hazard of leaving by `t` seconds in line."""
        b = _bin(t, 0)
        return self._cum[b] + self._rates[b] * (t - _LOWS[b])

    def stays(self, waited_s: float, more_s: float) -> float:
        """The chance a buyer in line for `waited_s` is still there `more_s` later."""
        # Runs for each buyer asked by every estimate: float arithmetic and the bins found by
        # a scan (no calls into bisect or max), all of which mypyc compiles to C.
        cum, rates = self._cum, self._rates
        a = _bin(waited_s, 0)
        end = waited_s + (more_s if more_s > 0.0 else 0.0)
        b = _bin(end, a)
        gone = cum[b] + rates[b] * (end - _LOWS[b]) - cum[a] - rates[a] * (waited_s - _LOWS[a])
        return math.exp(-gone) if gone > 0.0 else 1.0


def _bin(t: float, start: int) -> int:
    """The bin of `t` seconds, from bin `start` (at most that of `t`) on: the number of
    EDGES_S at most `t`, as `bisect.bisect_right(EDGES_S, t)`."""
    edges = EDGES_S
    last = len(edges)
    b = start
    while b < last and not t < edges[b]:
        b += 1
    return b
