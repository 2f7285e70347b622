"""Simulated grey tests for daemon/core/grey_stats.py: seeded streams of buyers, waits and
replies, each split between `control` and an arm at random as the arm hash does, with the
intervals and guardrails read after every observation (continuous monitoring: that is the
claim). Shared by tests/core/test_grey_stats.py and bench/grey_stats.py (more streams).

Each stream stops being read once its outcome is settled (the truth left an interval, or
the arm was stopped): later looks cannot undo it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from daemon.core.grey_stats import (
    WaitHistogram,
    difference_interval,
    proportion_interval,
    quantile_interval,
    replies_guardrail,
    wait_guardrail,
)

WAIT_ZERO = 0.6  # the share of buyers served at once
WAIT_MEAN_MS = 60_000.0  # the others wait Exp(mean), in control
Q = 0.95


def true_wait_quantile_ms(q: float, scale: float = 1.0) -> float:
    """The q-quantile of the simulated waits (control's times `scale`)."""
    if q <= WAIT_ZERO:
        return 0.0
    return scale * WAIT_MEAN_MS * math.log((1.0 - WAIT_ZERO) / (1.0 - q))


def _wait(rng: random.Random, scale: float) -> int:
    return 0 if rng.random() < WAIT_ZERO else int(scale * rng.expovariate(1.0 / WAIT_MEAN_MS))


@dataclass(frozen=True, slots=True)
class ConversionFigures:
    """Out of `streams`: those where the true difference, and the arm's true rate, ever left
    their interval."""

    streams: int
    difference_misses: int
    rate_misses: int


def conversion_streams(
    streams: int, buyers: int, p_arm: float, p_control: float, alpha: float, seed: int
) -> ConversionFigures:
    """`buyers` a stream, each to either side with chance 1/2, converting with its side's
    rate; both intervals read after every buyer."""
    rng = random.Random(seed)
    truth = p_arm - p_control
    diff_missed = rate_missed = 0
    for _ in range(streams):
        s1 = n1 = s0 = n0 = 0
        diff_out = rate_out = False
        for _ in range(buyers):
            if rng.random() < 0.5:
                n1 += 1
                s1 += rng.random() < p_arm
                if not rate_out:
                    low, high = proportion_interval(s1, n1, alpha)
                    rate_out = not low <= p_arm <= high
            else:
                n0 += 1
                s0 += rng.random() < p_control
            if not diff_out:
                low, high = difference_interval(s1, n1, s0, n0, alpha)
                diff_out = not low <= truth <= high
            if diff_out and rate_out:
                break
        diff_missed += diff_out
        rate_missed += rate_out
    return ConversionFigures(streams, diff_missed, rate_missed)


@dataclass(frozen=True, slots=True)
class GuardrailFigures:
    """Out of `streams`: those where the arm was stopped, when (observations in the arm,
    one per stopped stream), and (waits) those where control's true p95 ever left its
    interval."""

    streams: int
    stopped: int
    stop_at: tuple[int, ...]
    quantile_misses: int = 0


def wait_streams(
    streams: int, waits: int, scale: float, increase: float, alpha: float, seed: int
) -> GuardrailFigures:
    """`waits` a stream, each to either side with chance 1/2 (the arm's `scale` times
    longer); the wait guardrail and control's p95 interval read after every wait."""
    rng = random.Random(seed)
    truth = true_wait_quantile_ms(Q)
    stop_at: list[int] = []
    missed = 0
    for _ in range(streams):
        arm, control = WaitHistogram(), WaitHistogram()
        stopped = out = False
        for _ in range(waits):
            if rng.random() < 0.5:
                arm.add(_wait(rng, scale))
            else:
                control.add(_wait(rng, 1.0))
                if not out:
                    low, high = quantile_interval(control, Q, alpha)
                    out = not low <= truth <= high
            if not stopped and wait_guardrail(arm, control, increase, alpha) is not None:
                stopped = True
                stop_at.append(arm.total)
            if stopped and out:
                break
        missed += out
    return GuardrailFigures(streams, len(stop_at), tuple(stop_at), missed)


def reply_streams(
    streams: int, replies: int, p_arm: float, p_control: float, drop: float, alpha: float,
    seed: int,
) -> GuardrailFigures:  # fmt: skip
    """`replies` a stream, each to either side with chance 1/2, within the deadline with its
    side's chance; the replies guardrail read after every reply."""
    rng = random.Random(seed)
    stop_at: list[int] = []
    for _ in range(streams):
        w1 = n1 = w0 = n0 = 0
        for _ in range(replies):
            if rng.random() < 0.5:
                n1 += 1
                w1 += rng.random() < p_arm
            else:
                n0 += 1
                w0 += rng.random() < p_control
            if replies_guardrail(w1, n1, w0, n0, drop, alpha) is not None:
                stop_at.append(n1)
                break
    return GuardrailFigures(streams, len(stop_at), tuple(stop_at))
