"""Grey-test statistics benchmark (daemon/core/grey_stats.py, contract §3.7): what one read
costs, and how the always-valid intervals and the guardrails hold up under continuous
monitoring on more simulated streams than the tests use.

    .venv/bin/python bench/grey_stats.py [--streams 1000] [--seed 1]

1. Cost, in µs, of one interval (a rate, a difference, a p95 of 10,000 waits), one
   guardrail evaluation (waits, replies) and one wait counted: the core re-checks an arm's
   guardrails every few dozen events. Best of five runs of 100,000 calls each.
2. Coverage and false stops, on the seeded streams of tests/grey_streams.py, every interval
   and guardrail read after every observation, at alpha 0.05:
   - conversion, Bernoulli(0.23) against Bernoulli(0.2), 6,000 buyers a stream: the share
     of streams where the true difference (or the arm's rate) ever left its interval;
   - waits, identical arms, 4,000 a stream, under "+0%" (the strictest: the truth is on the
     guardrail) and "+20%": arms stopped, and control's true p95 ever outside its interval;
   - waits, the arm's exactly 1.2× control's, under "+20%" (on the guardrail): arms stopped;
   - replies within deadline, identical (90%) and the arm exactly 3 pp lower, under "-3pp",
     4,000 a stream: arms stopped.
   Every stop on these is a false one; each figure should be at most about alpha.
3. Power: how many observations in the arm until it is stopped, over a tenth of the
   streams: waits 3× control's under "+20%"; 80% of replies within deadline against 90%
   under "-3pp".
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.core.grey_stats import (
    WaitHistogram,
    difference_interval,
    proportion_interval,
    quantile_interval,
    replies_guardrail,
    wait_guardrail,
)
from tests.grey_streams import (
    GuardrailFigures,
    conversion_streams,
    reply_streams,
    wait_streams,
)

ALPHA = 0.05


def _cost_us(call: Callable[[], object]) -> float:
    """Best of five runs of 100,000 calls, µs a call."""
    return min(timeit.repeat(call, number=100_000, repeat=5)) / 100_000 * 1e6


def costs(seed: int) -> None:
    """Section 1."""
    rng = random.Random(seed)
    arm, control = WaitHistogram(), WaitHistogram()
    for _ in range(10_000):
        arm.add(0 if rng.random() < 0.6 else int(rng.expovariate(1 / 60_000)))
        control.add(0 if rng.random() < 0.6 else int(rng.expovariate(1 / 60_000)))
    print("cost of one call (µs, best of 5 × 100,000)")
    rows: list[tuple[str, Callable[[], object]]] = [
        ("proportion_interval", lambda: proportion_interval(2_000, 10_000)),
        ("difference_interval", lambda: difference_interval(2_300, 10_000, 2_000, 10_000)),
        ("quantile_interval p95, 10,000 waits", lambda: quantile_interval(control, 0.95)),
        ("wait_guardrail", lambda: wait_guardrail(arm, control, 0.2)),
        ("replies_guardrail", lambda: replies_guardrail(8_800, 10_000, 9_000, 10_000, 0.03)),
        ("WaitHistogram.add", lambda: control.add(61_000)),
    ]
    for name, call in rows:
        print(f"  {name:<38} {_cost_us(call):6.2f}")


def _share(count: int, streams: int) -> str:
    return f"{count}/{streams} = {count / streams:.3f}"


def _stops(figures: GuardrailFigures) -> str:
    if not figures.stop_at:
        return "none stopped"
    at = sorted(figures.stop_at)
    return (
        f"stopped {_share(figures.stopped, figures.streams)}; observations in the arm: "
        f"median {statistics.median(at):.0f}, p90 {at[int(0.9 * (len(at) - 1))]}, max {at[-1]}"
    )


def monitoring(streams: int, seed: int) -> None:
    """Sections 2 and 3."""
    print(f"\ncontinuous monitoring, alpha {ALPHA}, {streams} streams (read at every step)")
    started = time.perf_counter()
    conv = conversion_streams(streams, 6000, 0.23, 0.20, ALPHA, seed)
    print(f"  conversion 23% vs 20%, 6,000 buyers: difference ever outside "
          f"{_share(conv.difference_misses, streams)}, arm's rate ever outside "
          f"{_share(conv.rate_misses, streams)}")  # fmt: skip
    for step, increase, label in ((1, 0.0, "identical, +0%"), (2, 0.2, "identical, +20%")):
        waits = wait_streams(streams, 4000, 1.0, increase, ALPHA, seed + step)
        print(f"  waits {label}, 4,000 waits: false stops {_share(waits.stopped, streams)}, "
              f"control's p95 ever outside {_share(waits.quantile_misses, streams)}")  # fmt: skip
    edge = wait_streams(streams, 4000, 1.2, 0.2, ALPHA, seed + 3)
    print(f"  waits 1.2× control's, +20%, 4,000 waits: false stops "
          f"{_share(edge.stopped, streams)}")  # fmt: skip
    for p_arm, label in ((0.90, "identical (90%)"), (0.87, "arm 3 pp lower")):
        replies = reply_streams(streams, 4000, p_arm, 0.90, 0.03, ALPHA, seed + 4)
        print(f"  replies {label}, -3pp, 4,000 replies: false stops "
              f"{_share(replies.stopped, streams)}")  # fmt: skip
    few = max(1, streams // 10)
    print(f"\npower, {few} streams")
    print(f"  waits 3× control's, +20%: {_stops(wait_streams(few, 8000, 3.0, 0.2, ALPHA, seed))}")
    worse = reply_streams(few, 8000, 0.80, 0.90, 0.03, ALPHA, seed)
    print(f"  replies within deadline 80% vs 90%, -3pp: {_stops(worse)}")
    print(f"\n({time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    costs(args.seed)
    monitoring(args.streams, args.seed)


if __name__ == "__main__":
    main()
