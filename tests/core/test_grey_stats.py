"""The statistics of grey tests (daemon/core/grey_stats.py, contract §3.7): the wait buckets,
the always-valid intervals, the guardrails and their strings; then, on seeded simulated
streams read after every observation (tests/grey_streams.py), that the intervals hold the
truth at every look in at least about 1 − alpha of the streams, that identical arms are
not stopped, and that a clearly worse arm is. bench/grey_stats.py runs more streams."""

from __future__ import annotations

import itertools
import json
import math
from bisect import bisect_left

import pytest

from daemon.core.grey_stats import (
    MIN_COUNT,
    WAIT_BUCKETS,
    WAIT_EDGES_MS,
    WAIT_GRID,
    Breach,
    Guardrails,
    WaitHistogram,
    difference_interval,
    parse_guardrails,
    proportion_interval,
    quantile_interval,
    replies_guardrail,
    uplift,
    wait_guardrail,
)
from tests.grey_streams import conversion_streams, reply_streams, wait_streams

# ---------------------------------------------------------------------------- wait buckets


def test_wait_edges_are_zero_then_a_second_then_ten_percent_steps_to_two_days() -> None:
    assert WAIT_EDGES_MS[:3] == (0, 1000, 1100)
    steps = [b / a for a, b in itertools.pairwise(WAIT_EDGES_MS[1:])]
    assert all(1.099 < s < 1.101 for s in steps)
    assert WAIT_EDGES_MS[-1] >= 2 * 86_400_000
    assert 100 <= WAIT_BUCKETS <= 131


@pytest.mark.parametrize(
    ("wait_ms", "bucket"),
    [
        (0, 0),
        (-5, 0),
        (1, 1),
        (1000, 1),
        (1001, 2),
        (1100, 2),
        (1101, 3),
        (10**12, WAIT_BUCKETS - 1),
    ],
)
def test_a_wait_counts_in_the_bucket_whose_upper_edge_it_reaches(wait_ms: int, bucket: int) -> None:
    hist = WaitHistogram()
    hist.add(wait_ms)
    assert hist.learned()["counts"] == [[bucket, 1]]
    assert hist.buckets_at(1, 1) == (bucket, bucket)


def test_quantiles_read_the_upper_edge_of_the_nearest_rank_bucket() -> None:
    hist = WaitHistogram()
    assert hist.quantile_ms(0.95) is None
    for wait in [0] * 90 + [5000] * 9 + [10**12]:
        hist.add(wait)
    assert hist.quantile_ms(0.5) == 0.0
    assert hist.quantile_ms(0.95) == 5054.0  # 5 s lies in (4595, 5054]
    assert hist.quantile_ms(0.999) == math.inf  # beyond the grid


def test_buckets_at_agrees_with_sorting_from_either_end() -> None:
    waits = [0] * 40 + [i * 7919 % 300_000 for i in range(60)]
    hist = WaitHistogram()
    for wait in waits:
        hist.add(wait)
    bucket = sorted(bisect_left(WAIT_EDGES_MS, w) for w in waits)
    for low in range(1, 101, 3):
        for high in range(low, 101, 7):
            assert hist.buckets_at(low, high) == (bucket[low - 1], bucket[high - 1])


def test_learned_counts_survive_json_and_stay_bounded_however_many_waits() -> None:
    hist = WaitHistogram()
    for i in range(200_000):
        hist.add(i * 104_729 % 200_000_000)
    data = json.loads(json.dumps(hist.learned()))
    assert len(json.dumps(data)) < 3000
    assert len(data["counts"]) <= WAIT_BUCKETS
    back = WaitHistogram()
    back.restore(data)
    assert back.learned() == hist.learned()
    assert back.total == 200_000
    assert quantile_interval(back, 0.95) == quantile_interval(hist, 0.95)
    assert back.quantile_ms(1.0 - 1e-9) == math.inf  # its highest bucket is known again


@pytest.mark.parametrize(
    "data",
    [
        {"grid": "0,1000ms*1.2^k,k<90", "counts": [[0, 1]]},
        {"counts": [[0, 1]]},
        {"grid": WAIT_GRID, "counts": [[WAIT_BUCKETS, 1]]},
        {"grid": WAIT_GRID, "counts": [[0, -1]]},
        {"grid": WAIT_GRID, "counts": [[0, 1, 2]]},
    ],
)
def test_counts_of_another_grid_or_malformed_are_refused_and_change_nothing(
    data: dict[str, object],
) -> None:
    hist = WaitHistogram()
    hist.add(5000)
    before = hist.learned()
    with pytest.raises(ValueError, match="wait count"):
        hist.restore(data)
    assert hist.learned() == before


# ------------------------------------------------------------------------------ intervals


def test_below_the_minimum_count_every_interval_is_the_full_range() -> None:
    few = MIN_COUNT - 1
    assert proportion_interval(0, 0) == (0.0, 1.0)
    assert proportion_interval(few // 2, few) == (0.0, 1.0)
    assert difference_interval(few, few, 0, 1000) == (-1.0, 1.0)
    hist = WaitHistogram()
    for _ in range(few):
        hist.add(100_000)
    assert quantile_interval(hist, 0.95) == (0.0, math.inf)


def test_no_success_and_all_successes_still_have_a_width() -> None:
    low, high = proportion_interval(0, 200)
    assert low == 0.0 and 0.0 < high < 0.1
    low, high = proportion_interval(200, 200)
    assert 0.9 < low < 1.0 and high == 1.0
    low, high = difference_interval(0, 200, 0, 200)
    assert low < 0.0 < high


def test_impossible_counts_and_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="successes"):
        proportion_interval(11, 10)
    with pytest.raises(ValueError, match="successes"):
        difference_interval(-1, 100, 0, 100)
    with pytest.raises(ValueError, match="alpha"):
        proportion_interval(10, 100, alpha=1.5)
    with pytest.raises(ValueError, match="quantile level"):
        quantile_interval(WaitHistogram(), 1.0)


def test_intervals_narrow_as_observations_grow() -> None:
    widths = [b - a for a, b in (proportion_interval(n // 5, n) for n in range(30, 20_000, 5))]
    assert all(w1 > w2 for w1, w2 in itertools.pairwise(widths))
    diffs = [difference_interval(n // 4, n, n // 5, n) for n in range(40, 20_000, 20)]
    assert all(b - a > d - c for (a, b), (c, d) in itertools.pairwise(diffs))
    same = [0] * 60 + [1500 * i for i in range(40)]  # the same waits, again and again
    hist, bounds = WaitHistogram(), []
    for _ in range(100):
        for wait in same:
            hist.add(wait)
        bounds.append(quantile_interval(hist, 0.95))
    assert all(a1 <= a2 and b1 >= b2 for (a1, b1), (a2, b2) in itertools.pairwise(bounds))
    assert bounds[0][1] == math.inf  # q + g ≥ 1 at first
    assert bounds[-1][1] < math.inf and bounds[-1][0] > 0.0


def test_the_quantile_interval_reads_lower_and_upper_bucket_edges() -> None:
    hist = WaitHistogram()
    for _ in range(5000):
        hist.add(0)
    for _ in range(5000):
        hist.add(60_000)  # bucket (54_764, 60_240]
    assert quantile_interval(hist, 0.95) == (54_764.0, 60_240.0)
    assert quantile_interval(hist, 0.25) == (0.0, 0.0)


def test_uplift_is_in_points_with_the_difference_interval_and_a_relative_point() -> None:
    up = uplift(230, 1000, 200, 1000)
    assert up.points == pytest.approx(0.03)
    assert (up.low, up.high) == difference_interval(230, 1000, 200, 1000)
    assert up.relative == pytest.approx(0.15)
    assert uplift(5, 100, 0, 100).relative is None
    empty = uplift(0, 0, 10, 100)
    assert (empty.points, empty.relative, empty.low, empty.high) == (None, None, -1.0, 1.0)


# ------------------------------------------------------------------------------ guardrails


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ({}, Guardrails()),
        ({"p95_wait": "+20%"}, Guardrails(p95_wait=0.2)),
        ({"p95_wait": "+0%", "replies_within_deadline": "-3pp"}, Guardrails(0.0, 0.03)),
        ({"replies_within_deadline": "-2.5pp"}, Guardrails(replies_within_deadline=0.025)),
    ],
)
def test_guardrail_strings_parse(raw: dict[str, object], parsed: Guardrails) -> None:
    assert parse_guardrails(raw) == parsed


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"p95_wait": "20%"}, "p95_wait: '20%' is not like '\\+20%'"),
        ({"p95_wait": "-20%"}, "a longer wait is worse"),
        ({"p95_wait": "+20"}, "then '%'"),
        ({"p95_wait": 20}, "p95_wait: 20 is not like"),
        ({"replies_within_deadline": "+3pp"}, "a lower share is worse"),
        ({"replies_within_deadline": "-3%"}, "then 'pp'"),
        ({"replies_within_deadline": "-120pp"}, "100pp at most"),
        ({"p99_wait": "+5%"}, "unknown guardrail 'p99_wait'"),
    ],
)
def test_a_bad_guardrail_string_names_the_guardrail_and_the_problem(
    raw: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_guardrails(raw)


def _hist(waits: list[int]) -> WaitHistogram:
    hist = WaitHistogram()
    for wait in waits:
        hist.add(wait)
    return hist


def test_a_far_longer_p95_wait_stops_the_arm_with_a_sentence_a_person_reads() -> None:
    control = _hist([0] * 900 + [100_000] * 100)
    arm = _hist([0] * 900 + [400_000] * 100)
    breach = wait_guardrail(arm, control, 0.2)
    assert breach == Breach(
        "p95_wait",
        "p95 wait 405 s (at least 368 s) against control's 107 s (at most 107 s): "
        "worse than +20% with 95% confidence",
    )
    assert wait_guardrail(control, arm, 0.2) is None
    assert wait_guardrail(arm, control, 4.0) is None  # not worse than +400%


def test_waits_under_a_second_are_noise_but_a_second_and_a_half_is_not() -> None:
    control = _hist([0] * 1000)
    assert wait_guardrail(_hist([900] * 1000), control, 0.2) is None
    assert wait_guardrail(_hist([1500] * 1000), control, 0.2) is not None


def test_fewer_replies_within_deadline_stop_the_arm_beyond_the_drop_only() -> None:
    breach = replies_guardrail(700, 1000, 900, 1000, 0.03)
    assert breach is not None
    assert breach.guardrail == "replies_within_deadline"
    assert breach.reason.startswith(
        "replies within deadline 70.0% against control's 90.0%: 20.0 pp lower (at least "
    )
    assert breach.reason.endswith("worse than -3pp with 95% confidence")
    assert replies_guardrail(700, 1000, 900, 1000, 0.25) is None
    assert replies_guardrail(20, 29, 900, 1000, 0.03) is None  # a handful of replies


# ----------------------------------------------------------- continuous monitoring, simulated

ALPHA = 0.05
MARGIN = 0.08  # alpha plus the noise of a fraction over 200 streams


def test_conversion_intervals_hold_the_truth_at_every_look_in_most_streams() -> None:
    """200 streams of 4,000 buyers, Bernoulli(0.23) against Bernoulli(0.2), read after
    every buyer: the true difference (and the arm's rate) leaves its interval at some look
    in at most about alpha of them."""
    figures = conversion_streams(200, 4000, 0.23, 0.2, ALPHA, seed=11)
    assert figures.difference_misses / figures.streams <= MARGIN
    assert figures.rate_misses / figures.streams <= MARGIN


def test_identical_waits_stop_no_arm_and_p95_holds_the_truth_at_every_look() -> None:
    """200 streams of 2,000 waits on identical arms under "+0%", the strictest guardrail
    (the truth lies on it: any stop is a false one), read after every wait."""
    figures = wait_streams(200, 2000, 1.0, 0.0, ALPHA, seed=12)
    assert figures.stopped / figures.streams <= MARGIN
    assert figures.quantile_misses / figures.streams <= MARGIN


def test_an_arm_just_at_the_replies_guardrail_is_rarely_stopped() -> None:
    """200 streams of 3,000 replies, the arm exactly 3 pp below control (not beyond the
    -3pp guardrail: any stop is a false one), read after every reply."""
    figures = reply_streams(200, 3000, 0.87, 0.90, 0.03, ALPHA, seed=13)
    assert figures.stopped / figures.streams <= MARGIN


def test_an_arm_with_three_times_the_waits_is_stopped_within_a_thousand() -> None:
    figures = wait_streams(20, 4000, 3.0, 0.2, ALPHA, seed=14)
    assert figures.stopped == 20
    assert max(figures.stop_at) <= 1000


def test_an_arm_ten_points_fewer_replies_within_deadline_is_stopped_within_two_thousand() -> None:
    figures = reply_streams(20, 4000, 0.80, 0.90, 0.03, ALPHA, seed=15)
    assert figures.stopped == 20
    assert max(figures.stop_at) <= 2000
