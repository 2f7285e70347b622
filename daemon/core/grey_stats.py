"""The statistics of a grey test (contract §3.7): per-arm figures that stay valid however
often they are read, and the guardrails that stop an arm. Pure arithmetic on counts.

**Always-valid intervals.** A supervisor looks every hour and the core re-checks the
guardrails every few dozen events; a fixed-n interval read that often would sooner or later
exclude the truth by luck alone. These are confidence *sequences*: with chance at least
1 − alpha the truth lies inside at every look, whenever and however often they are read.
Each is the normal-mixture boundary of the mixture SPRT (Johari, Pekelis and Walsh,
"Always Valid Inference: Continuous Monitoring of A/B Tests", Operations Research 2022; the
method behind Optimizely's Stats Engine): an estimate with variance V, mixed over effects
N(0, tau²), gives

    estimate ± sqrt( V·(V + tau²)/tau² · (ln((V + tau²)/V) − 2·ln(alpha)) )     (`_radius`)

They are asymptotic, as in the paper: the boundary is exact for normal estimates and holds
for counts through the central limit theorem, with each variance estimated from the counts.
With a handful of buyers that means little, so below MIN_COUNT observations per arm every
interval is the full range (and no guardrail fires on a handful of buyers). The unit is
assumed independent: buyers are (the arm is drawn per buyer); the replies and waits of one
buyer are not quite, which makes their intervals somewhat narrower than they should be. The
arms share agents and queues, so one arm's policy moves the other's waits: the figures
compare the arms as run side by side, not either policy run alone.

**Choosing tau.** Any tau > 0 keeps the guarantee; it sets *when* the interval is tightest:
at the n where tau² ≈ 8-10·V (V the estimate's variance at n; the factor grows as alpha
shrinks). Away from it the width grows slowly beyond and quickly before, so each tau is set
by the sample sizes and effects that matter here (widths at alpha 0.05, rates of 20%):

- PROPORTION_TAU = 0.03 (a conversion rate): rates run at 5-30% and are read to a few
  points; tightest near 1,500 buyers an arm (±3.9 pp at 1,000, ±1.3 pp at 10,000), within
  10% of the best tau for each size from 300 to 30,000 buyers.
- DIFFERENCE_TAU = 0.03 (an uplift, and the replies guardrail): the uplifts a shop cares
  about, and the -3pp guardrails, are a few points; tightest near 3,000 buyers an arm
  (±3.1 pp there, against ±2.0 pp for a fixed-n 95% interval read once), within 7% of the
  best tau from 1,000 to 30,000 an arm.
- QUANTILE_TAU = 0.03 (a quantile's level, below): a p95's upper bound is finite only once
  g < 0.05, so what counts is the first few hundred waits: at alpha/2 this tau is tightest
  near 540 waits an arm, gets g under 0.05 by about 210 and under 0.035 by about 420 (as
  soon as any tau does), and stays within 9% of the best tau up to 10,000.

**Quantiles** (Howard and Ramdas, "Sequential estimation of quantiles with applications to
A/B-testing and best-arm identification", Bernoulli 2022). Of t waits, the count at or
below the true q-quantile is Binomial(t, q) (at least: ties only help), so with g the same
boundary on the level (V = q(1−q)/t, exact under the null, no estimate), the true quantile
lies in [empirical quantile at q − g, empirical quantile at q + g], read at its bucket's
lower and upper edge; q − g ≤ 0 reads 0, q + g ≥ 1 reads math.inf (unbounded above; orjson
writes it as null). Waits are counted in `WaitHistogram`, fixed buckets: bounded state.

**Guardrails** (`wait_guardrail`, `replies_guardrail`; `parse_guardrails` reads the
shop's strings). An arm is stopped only when it is worse than control beyond the guardrail
with confidence 1 − alpha, at every look: for waits, its p95's lower bound above (1 + r)
times control's upper bound plus a second (each at alpha/2, so the pair holds at alpha);
for replies within the deadline, the difference's upper bound below −pp. alpha is per arm
and per guardrail: two guardrails on two arms may stop one of them wrongly with chance up to
4·alpha (divide alpha to guard the family).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ALPHA = 0.05  # the default error: 95% intervals
PROPORTION_TAU = 0.03  # module docstring, Choosing tau
DIFFERENCE_TAU = 0.03
QUANTILE_TAU = 0.03
MIN_COUNT = 30  # observations an arm needs before an interval is more than the full range
WAIT_QUANTILE = 0.95  # the wait guardrail's quantile (p95_wait)
WAIT_SLACK_MS = 1000  # waits under a second are the noise of the bucket grid (its first step)

# ---------------------------------------------------------------------------- wait buckets

_FIRST_MS = 1000  # the first edge after 0: 1 s
_STEPS = 128  # edges 1 s · 1.1^k, k < _STEPS: up to about 2.1 days
WAIT_GRID = f"0,{_FIRST_MS}ms*1.1^k,k<{_STEPS}"
"""The grid's name, stored with the counts: counts made on another grid are refused."""
WAIT_EDGES_MS: tuple[int, ...] = (
    0,
    *((_FIRST_MS * 11**k + 10**k // 2) // 10**k for k in range(_STEPS)),  # exact integers
)
"""Upper edges of the wait buckets, in ms (a wait of exactly an edge counts in its bucket):
0 alone (most buyers wait 0), then (0, 1 s], then 10% steps to about 2.1 days; one more
bucket holds the rest. Shared by every histogram and every stored count."""
WAIT_BUCKETS = len(WAIT_EDGES_MS) + 1
_LOWER_MS: tuple[float, ...] = (0.0, *(float(e) for e in WAIT_EDGES_MS))
_UPPER_MS: tuple[float, ...] = (*(float(e) for e in WAIT_EDGES_MS), math.inf)


class WaitHistogram:
    """Waits counted in the buckets of WAIT_EDGES_MS: flat size however long an experiment
    runs; adding costs a bisection, reading a quantile a scan of the buckets from the
    nearer end (for a p95, the few buckets of the tail)."""

    __slots__ = ("_counts", "_top", "_total")

    def __init__(self) -> None:
        self._counts = [0] * WAIT_BUCKETS
        self._total = 0
        self._top = 0  # the highest bucket with a count (0 when empty)

    @property
    def total(self) -> int:
        """Waits counted."""
        return self._total

    def add(self, wait_ms: int) -> None:
        """Count one wait of `wait_ms` (a negative one, a clock's hiccup, counts as 0)."""
        b = bisect_left(WAIT_EDGES_MS, wait_ms)
        self._counts[b] += 1
        self._total += 1
        self._top = max(self._top, b)

    def buckets_at(self, low_rank: int, high_rank: int) -> tuple[int, int]:
        """The buckets holding the `low_rank`-th and `high_rank`-th smallest waits (1-based,
        1 ≤ low_rank ≤ high_rank ≤ total), in one scan from the nearer end."""
        counts = self._counts
        if low_rank + high_rank <= self._total:  # scan up: `seen` waits below bucket b
            seen = b = 0
            while seen + counts[b] < low_rank:
                seen += counts[b]
                b += 1
            low = b
            while seen + counts[b] < high_rank:
                seen += counts[b]
                b += 1
            return low, b
        at_most = self._total  # scan down: `at_most` waits in bucket b and below
        b = self._top
        while at_most - counts[b] >= high_rank:
            at_most -= counts[b]
            b -= 1
        high = b
        while at_most - counts[b] >= low_rank:
            at_most -= counts[b]
            b -= 1
        return b, high

    def quantile_ms(self, q: float) -> float | None:
        """The q-quantile (nearest rank) read at its bucket's upper edge, so at most 10%
        above the exact one (math.inf beyond the grid); None when nothing is counted."""
        if self._total == 0:
            return None
        rank = _rank(q, self._total)
        return _UPPER_MS[self.buckets_at(rank, rank)[1]]

    def learned(self) -> dict[str, object]:
        """The counts as plain data: the grid's name and [bucket, count] for each bucket
        with a count (at most WAIT_BUCKETS pairs)."""
        pairs = [[b, n] for b, n in enumerate(self._counts) if n]
        return {"grid": WAIT_GRID, "counts": pairs}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take the counts `learned` gave. Counts made on another grid, or malformed, raise
        ValueError (and change nothing): they cannot be read on this one."""
        if data.get("grid") != WAIT_GRID:
            raise ValueError(f"wait counts on grid {data.get('grid')!r}, not {WAIT_GRID!r}")
        counts = [0] * WAIT_BUCKETS
        for pair in data.get("counts", ()):
            if not _is_count(pair):
                raise ValueError(f"wait count {pair!r} is not [bucket, count]")
            counts[pair[0]] = pair[1]
        self._counts = counts
        self._total = sum(counts)
        self._top = max((b for b, n in enumerate(counts) if n), default=0)


def _is_count(pair: object) -> bool:
    """Whether `pair` is a stored [bucket, count]."""
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        return False
    b, n = pair
    return isinstance(b, int) and isinstance(n, int) and 0 <= b < WAIT_BUCKETS and n >= 0


def _rank(level: float, total: int) -> int:
    """The nearest rank of `level` among `total`: the smallest k with k/total ≥ level
    (within rounding), from 1 to total."""
    k = math.ceil(level * total - 1e-9)
    return 1 if k < 1 else min(k, total)


# ------------------------------------------------------------------------------ intervals


def _radius(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence (module docstring)."""
    if not (0.0 < alpha < 1.0 and tau > 0.0):
        raise ValueError(f"alpha {alpha} must be in (0, 1) and tau {tau} above 0")
    tau2 = tau * tau
    both = variance + tau2
    return math.sqrt(variance * both / tau2 * (math.log(both / variance) - 2.0 * math.log(alpha)))


def _check(successes: int, n: int) -> None:
    """Reject impossible counts (a bug of the caller's)."""
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n}")


def _guarded_variance(successes: int, n: int) -> float:
    """A share's variance for n > 0 of them, from (s + 1)/(n + 2) so that 0/n and n/n still
    have a width."""
    p = (successes + 1) / (n + 2)
    return p * (1.0 - p) / n


def proportion_interval(
    successes: int, n: int, alpha: float = ALPHA, tau: float = PROPORTION_TAU
) -> tuple[float, float]:
    """Always-valid interval of a rate (a conversion rate) from `successes` out of `n`,
    within [0, 1]; (0, 1) below MIN_COUNT."""
    _check(successes, n)
    if n < MIN_COUNT:
        return 0.0, 1.0
    r = _radius(_guarded_variance(successes, n), tau, alpha)
    p = successes / n
    return max(0.0, p - r), min(1.0, p + r)


def difference_interval(
    s1: int, n1: int, s0: int, n0: int, alpha: float = ALPHA, tau: float = DIFFERENCE_TAU
) -> tuple[float, float]:
    """Always-valid interval of p1 − p0 (an arm's rate less control's), within [−1, 1];
    (−1, 1) while either arm has fewer than MIN_COUNT."""
    _check(s1, n1)
    _check(s0, n0)
    if n1 < MIN_COUNT or n0 < MIN_COUNT:
        return -1.0, 1.0
    variance = _guarded_variance(s1, n1) + _guarded_variance(s0, n0)
    r = _radius(variance, tau, alpha)
    d = s1 / n1 - s0 / n0
    return max(-1.0, d - r), min(1.0, d + r)


def quantile_interval(
    hist: WaitHistogram, q: float, alpha: float = ALPHA, tau: float = QUANTILE_TAU
) -> tuple[float, float]:
    """Always-valid interval of the q-quantile of the waits in `hist`, in ms (module
    docstring, Quantiles); (0, math.inf) below MIN_COUNT."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level {q} must be in (0, 1)")
    total = hist.total
    if total < MIN_COUNT:
        return 0.0, math.inf
    g = _radius(q * (1.0 - q) / total, tau, alpha)
    low_level, high_level = q - g, q + g
    low_rank = _rank(low_level, total) if low_level > 0.0 else 1
    high_rank = _rank(high_level, total) if high_level < 1.0 else total
    low_b, high_b = hist.buckets_at(low_rank, high_rank)
    low = _LOWER_MS[low_b] if low_level > 0.0 else 0.0
    high = _UPPER_MS[high_b] if high_level < 1.0 else math.inf
    return low, high


@dataclass(frozen=True, slots=True)
class Uplift:
    """An arm's conversion against control's. The interval is on the absolute difference
    (points); the relative uplift is a point estimate only."""

    points: float | None  # arm's rate − control's, a fraction (0.03: +3 pp); None: no buyers
    low: float  # the always-valid interval of `points`
    high: float
    relative: float | None  # arm's rate / control's − 1; None when control's rate is 0


def uplift(
    arm_converted: int, arm_buyers: int, control_converted: int, control_buyers: int,
    alpha: float = ALPHA,
) -> Uplift:  # fmt: skip
    """The uplift of an arm over control from their buyers and conversions."""
    low, high = difference_interval(
        arm_converted, arm_buyers, control_converted, control_buyers, alpha
    )
    if arm_buyers == 0 or control_buyers == 0:
        return Uplift(None, low, high, None)
    arm, control = arm_converted / arm_buyers, control_converted / control_buyers
    return Uplift(arm - control, low, high, arm / control - 1.0 if control > 0.0 else None)


# ------------------------------------------------------------------------------ guardrails

_INCREASE = re.compile(r"\+(\d+(?:\.\d+)?)%")  # "+20%"
_DROP = re.compile(r"-(\d+(?:\.\d+)?)pp")  # "-3pp"
_INCREASE_SHAPE = "'+20%': a plus (a longer wait is worse), a number, then '%'"
_DROP_SHAPE = "'-3pp': a minus (a lower share is worse), a number, then 'pp'"


@dataclass(frozen=True, slots=True)
class Guardrails:
    """A shop's guardrails, parsed (None: not set)."""

    p95_wait: float | None = None  # the relative increase that stops an arm: 0.2 for "+20%"
    replies_within_deadline: float | None = None  # the drop, as a fraction: 0.03 for "-3pp"


def parse_guardrails(raw: Mapping[str, object]) -> Guardrails:
    """The `guardrails` table of `[experiment]`; ValueError naming the guardrail and what
    is wrong with it."""
    unknown = sorted(set(raw) - {"p95_wait", "replies_within_deadline"})
    if unknown:
        raise ValueError(
            f"unknown guardrail {unknown[0]!r}: the guardrails are p95_wait "
            "(such as '+20%') and replies_within_deadline (such as '-3pp')"
        )
    wait, replies = raw.get("p95_wait"), raw.get("replies_within_deadline")
    return Guardrails(
        None if wait is None else _number(wait, "p95_wait", _INCREASE, _INCREASE_SHAPE) / 100.0,
        None if replies is None else _drop(replies),
    )


def _drop(value: object) -> float:
    """replies_within_deadline's drop as a fraction (0.03 for "-3pp")."""
    points = _number(value, "replies_within_deadline", _DROP, _DROP_SHAPE)
    if points > 100.0:
        raise ValueError(f"replies_within_deadline: {value!r}: a share drops by 100pp at most")
    return points / 100.0


def _number(value: object, key: str, pattern: re.Pattern[str], shape: str) -> float:
    """The number in `value`, a string matching `pattern` (described by `shape`)."""
    match = pattern.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{key}: {value!r} is not like {shape}")
    return float(match.group(1))


@dataclass(frozen=True, slots=True)
class Breach:
    """A guardrail an arm broke: which (a key of `Guardrails`), and why, in a sentence."""

    guardrail: str
    reason: str


def wait_guardrail(
    arm: WaitHistogram, control: WaitHistogram, increase: float, alpha: float = ALPHA
) -> Breach | None:
    """The arm breaks the wait guardrail `increase` (0.2 for +20%) when the lower bound of
    its p95 exceeds (1 + increase) × control's upper bound + WAIT_SLACK_MS, each at
    alpha/2; None while it does not (always, below MIN_COUNT waits in either)."""
    q = WAIT_QUANTILE
    arm_low, _ = quantile_interval(arm, q, alpha / 2.0)
    _, control_high = quantile_interval(control, q, alpha / 2.0)
    if not arm_low > (1.0 + increase) * control_high + WAIT_SLACK_MS:
        return None
    return Breach(
        "p95_wait",
        f"p95 wait {_seconds(arm.quantile_ms(q))} (at least {_seconds(arm_low)}) against "
        f"control's {_seconds(control.quantile_ms(q))} (at most {_seconds(control_high)}): "
        f"worse than +{increase * 100:g}% with {(1.0 - alpha) * 100:g}% confidence",
    )


def replies_guardrail(
    arm_within: int, arm_replies: int, control_within: int, control_replies: int,
    drop: float, alpha: float = ALPHA,
) -> Breach | None:  # fmt: skip
    """The arm breaks the replies guardrail `drop` (0.03 for -3pp) when the upper bound of
    its share of replies within the deadline, less control's, is below −drop; None while it
    is not (always, below MIN_COUNT replies in either)."""
    _, high = difference_interval(arm_within, arm_replies, control_within, control_replies, alpha)
    if not high < -drop:
        return None
    arm, control = arm_within / arm_replies, control_within / control_replies
    return Breach(
        "replies_within_deadline",
        f"replies within deadline {arm:.1%} against control's {control:.1%}: "
        f"{(control - arm) * 100:.1f} pp lower (at least {-high * 100:.1f} pp): "
        f"worse than -{drop * 100:g}pp with {(1.0 - alpha) * 100:g}% confidence",
    )


def _seconds(ms: float | None) -> str:
    """A wait for a person: whole seconds, tenths below 10 s (None, no waits: not reached
    once a guardrail fires)."""
    if ms is None:
        return "none"
    if math.isinf(ms):
        return f"over {WAIT_EDGES_MS[-1] / 86_400_000:.1f} days"
    return f"{ms / 1000:.1f} s" if ms < 10_000 else f"{ms / 1000:.0f} s"
