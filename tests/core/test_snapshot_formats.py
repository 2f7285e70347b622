"""Checkpoint formats across versions (daemon/core/snapshot.py, "Formats"): what a newer
version reads of an older one's rows, and what an older one does with a newer one's."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import orjson
import pytest

from daemon.core.engine import Engine
from daemon.core.snapshot import FORMAT, ShopDelta, SnapshotError, take_delta
from tests.scenario import SHOP, T0, Scenario, shop

CONFIG = shop(["a1", "a2"], queue={"enabled": True, "default_cap": 1, "session_timeout": "5m"})


def _busy_shop() -> Scenario:
    """A shop with an agent in session, one off, a buyer in session, one in line and one
    whose session ended: every kind of row and every positional list."""
    sc = Scenario(CONFIG)
    sc.at("0s").online("a1")
    sc.inquiry("b1")
    sc.inquiry("b2")  # in line: a1 is at its cap
    sc.at("10s").says("b1")
    sc.at("20s").replies("b1", "a1")
    sc.at("1m").inquiry("b3")
    sc.at("6m")  # b1's session timed out at 5m20s; b2 took its place; b3 waits
    return sc


def _snapshot(sc: Scenario) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(orjson.dumps(sc.engine.snapshot_shop(SHOP)))
    return data


def _as_format_2(data: dict[str, Any]) -> dict[str, Any]:
    """The snapshot as a format-2 version (before rows carried a format) stored it."""
    old = copy.deepcopy(data)
    del old["writer"]
    for part in ("agents", "buyers"):
        for row in old[part].values():
            del row["format"]
    return old


def _restored(data: dict[str, Any], *, track: bool = False) -> Engine:
    engine = Engine({SHOP: CONFIG}, track=track)
    engine.restore_shop(SHOP, copy.deepcopy(data))
    return engine


def test_every_row_carries_the_format_that_wrote_it_and_the_shop_format_stays_2() -> None:
    data = _snapshot(_busy_shop())
    assert (FORMAT, data["format"], data["writer"]) == (4, 2, 4)
    rows = [*data["agents"].values(), *data["buyers"].values()]
    assert {row["format"] for row in rows} == {4}
    assert {"session", "queued", "last"} <= {key for row in rows for key in row}


def test_rows_a_format_2_version_wrote_load_into_the_same_shop() -> None:
    """A newer daemon reads every older row: the previous format's rows restore the shop
    the current format describes, and it goes on exactly as the uninterrupted shop."""
    sc = _busy_shop()
    data = _snapshot(sc)
    engine = _restored(_as_format_2(data))
    assert engine.snapshot_shop(SHOP) == data

    went_on, before = _twin(sc, engine), len(sc.outputs)
    for run in (sc, went_on):
        run.at("7m").online("a2")
        run.inquiry("b4")
        run.at("8m").says("b4")
        run.at("30m")
    assert went_on.outputs == sc.outputs[before:] != []
    assert went_on.engine.snapshot_shop(SHOP) == sc.engine.snapshot_shop(SHOP)


def test_a_session_a_version_before_reply_clocks_stored_has_its_clock_start_now() -> None:
    """Format 4 keeps a session's reply clock under the buyer row's `reply` key; in a row
    an older version wrote (none) or rewrote (format 3, a stale `reply` carried along) the
    clock of a waiting buyer starts at the snapshot's `now`, and the session is answered
    when the agent wrote after the assignment (snapshot.py, Formats)."""
    sc = Scenario(CONFIG)
    sc.at("0s").online("a1", "a2")
    sc.inquiry("b1")  # a1
    sc.inquiry("b2")  # a2
    sc.at("10s").says("b1")  # never answered
    sc.at("20s").says("b2")
    sc.at("25s").replies("b2", "a2")
    sc.at("30s").says("b2")
    data = _snapshot(sc)
    assert data["buyers"]["b1"]["reply"] == [T0 + 10_000, False, False, T0]
    assert data["buyers"]["b2"]["reply"] == [T0 + 30_000, True, False, T0]
    assert _restored(data).snapshot_shop(SHOP) == data
    older = copy.deepcopy(data)
    for row in older["buyers"].values():
        row["format"] = 3
    del older["buyers"]["b1"]["reply"]
    older["buyers"]["b2"]["reply"] = [T0, False]  # what format 3 carried along, stale
    restored = _restored(older).shop(SHOP)
    clocks = {b: restored.buyers[b].session for b in ("b1", "b2")}
    now = older["now"]  # the shop's clock: its latest event, at 30s
    assert {b: (s.waiting_since, s.answered) for b, s in clocks.items() if s} == {
        "b1": (now, False),
        "b2": (now, True),
    }


def _twin(sc: Scenario, engine: Engine) -> Scenario:
    """A scenario that goes on from `sc`'s time and event ids with `engine`."""
    twin = Scenario(CONFIG)
    twin.engine, twin.now = engine, sc.now
    first = next(sc._ids)
    sc._ids, twin._ids = itertools.count(first), itertools.count(first)
    return twin


def _with_newer_fields(data: dict[str, Any], shop_format: int) -> dict[str, Any]:
    """The snapshot as a newer version (format 5) might store it: a field of its own in an
    agent row, a buyer row and the meta part, and the shop format it asks for."""
    newer = copy.deepcopy(data)
    newer.update(format=shop_format, writer=5, experiment={"name": "x", "arms": [1, 2]})
    newer["agents"]["a1"].update(format=5, reply_stats=[3, 1])
    newer["buyers"]["b2"].update(format=5, reply_owed_since=12_345)
    return newer


def test_fields_a_newer_version_wrote_are_kept_when_this_one_rewrites_the_rows() -> None:
    """An older daemon never silently drops what a newer one wrote: with a shop format it
    reads, it carries the newer fields along as they were, also in the rows it changes."""
    newer = _with_newer_fields(_snapshot(_busy_shop()), shop_format=3)
    engine = _restored(newer, track=True)
    again = engine.snapshot_shop(SHOP)
    assert again["experiment"] == {"name": "x", "arms": [1, 2]}
    assert (again["format"], again["writer"]) == (3, 4), "the shop format never goes down"
    assert again["agents"]["a1"]["reply_stats"] == [3, 1]
    assert again["buyers"]["b2"]["reply_owed_since"] == 12_345
    assert again["agents"]["a1"]["format"] == again["buyers"]["b2"]["format"] == 4

    _twin(_busy_shop(), engine).at("11m")  # b2's session with a1 timed out; b3 took it
    delta = take_delta(engine.shop(SHOP))
    assert isinstance(delta, ShopDelta)
    assert delta.buyers["b2"] is not None and delta.agents["a1"] is not None, "both rewritten"
    assert delta.buyers["b2"]["reply_owed_since"] == 12_345
    assert delta.agents["a1"]["reply_stats"] == [3, 1]
    assert delta.meta["experiment"] == {"name": "x", "arms": [1, 2]}


@pytest.mark.parametrize("stored", [5, 99, None, "3", 1])
def test_a_shop_format_this_version_does_not_read_is_refused_and_says_why(
    stored: object,
) -> None:
    newer = _with_newer_fields(_snapshot(_busy_shop()), shop_format=5)
    if stored is None:
        del newer["format"]
    else:
        newer["format"] = stored
    with pytest.raises(SnapshotError, match=r"checkpoint format .* does not read") as refused:
        _restored(newer)
    assert repr(stored) in str(refused.value)
    assert "a newer version wrote it" in str(refused.value)


@pytest.mark.parametrize("row_format", ["3", 1, 2.5, None])
def test_a_row_whose_format_is_not_a_format_number_does_not_load(row_format: object) -> None:
    data = _snapshot(_busy_shop())
    data["buyers"]["b2"]["format"] = row_format
    with pytest.raises(SnapshotError, match="'b2' has format"):
        _restored(data)
