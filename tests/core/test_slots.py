"""`slots.Ends`, the sorted list of quiet-since times the slot index reads: the same entries,
in the same order, as a plain sorted list, through the splits and merges of its sublists."""

from __future__ import annotations

import random
from bisect import insort

import pytest

from daemon.core.slots import LOAD, Ends


def _same(ends: Ends, expected: list[int]) -> None:
    assert len(ends) == len(expected)
    assert [ends[i] for i in range(len(ends))] == expected


def test_ends_keep_every_time_sorted_with_repeats_while_growing_and_shrinking() -> None:
    rnd = random.Random(15)
    ends, expected = Ends(), []
    for step in range(5 * LOAD):  # grows past several splits, repeats included
        value = rnd.randrange(1000) if step % 3 else 10**12 + step
        ends.add(value)
        insort(expected, value)
        if step % 499 == 0:
            _same(ends, expected)
    _same(ends, expected)
    while expected:  # and shrinks, merging sublists, down to nothing
        value = expected.pop(rnd.randrange(len(expected)))
        ends.remove(value)
        if len(expected) % 397 == 0:
            _same(ends, expected)
    _same(ends, [])


def test_ends_refuse_a_time_they_do_not_hold_and_an_index_out_of_range() -> None:
    ends = Ends()
    with pytest.raises(IndexError):
        ends[0]
    for value in (30, 10, 20, 20):
        ends.add(value)
    _same(ends, [10, 20, 20, 30])
    with pytest.raises(ValueError):
        ends.remove(25)
    with pytest.raises(ValueError):
        ends.remove(40)
    with pytest.raises(IndexError):
        ends[4]
    with pytest.raises(IndexError):
        ends[-1]
    ends.remove(20)
    _same(ends, [10, 20, 30])
