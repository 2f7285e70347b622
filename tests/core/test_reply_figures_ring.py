"""The last hour's reply counts (daemon/core/replies.py) read from running totals agree with
a plain count of the replies in the window, whatever the gaps between replies and reads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from daemon.core.replies import HOUR_MINUTES, MINUTE_MS, ReplyFigures

MINUTES = st.integers(0, 70 * MINUTE_MS)  # a read may come after a long quiet
SECONDS = st.integers(0, 5 * MINUTE_MS)  # replies come closer together
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just(True), MINUTES, st.booleans()),
        st.tuples(st.just(False), SECONDS, st.booleans()),
    ),
    min_size=20,
    max_size=120,
)


@given(STEPS)
def test_last_hour_counts_exactly_the_replies_of_the_window(
    steps: list[tuple[bool, int, bool]],
) -> None:
    figures, now, seen = ReplyFigures(), 0, []
    for read, gap, within in steps:
        now += gap
        if read:
            minute = now // MINUTE_MS
            window = [w for m, w in seen if minute - HOUR_MINUTES < m <= minute]
            assert figures.last_hour(now) == (len(window), sum(window))
        else:
            figures.observe(1000, within, now)
            seen.append((now // MINUTE_MS, within))
    restored = ReplyFigures()
    restored.restore(figures.learned())
    assert restored.last_hour(now) == figures.last_hour(now)
