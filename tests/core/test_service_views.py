"""The views the JSON API and the console read (daemon/service/views.py) are bounded: a
view holds at most MAX_PARTS shops, explanations and grey tests whatever is asked, and the list of
thousands of shops is read a slice per loop call, the previous view served meanwhile."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from daemon.core.config import ShopConfig
from daemon.core.engine import Engine
from daemon.core.view import experiments_view
from daemon.service import views as views_module
from daemon.service.views import LIST, MAX_PARTS, Decisions, Views
from tests.grey_shop import grey_scenario
from tests.scenario import SHOP


def _engine(count: int) -> Engine:
    return Engine({
        f"s{i:04d}": ShopConfig.model_validate({
            "id": f"s{i:04d}", "agents": [{"id": "a1"}],
            "groups": [{"name": "g", "agents": ["a1"]}],
        })
        for i in range(count)
    })  # fmt: skip


def _checkpoint(engine: Engine) -> Any:
    return SimpleNamespace(partition_of=dict.fromkeys(engine.shops, 0), set_aside={})


async def test_a_view_builds_at_most_max_parts_shops_the_most_recently_asked() -> None:
    engine = _engine(100)
    now = [0.0]
    views = Views(clock=lambda: now[0])
    asks = []
    for i in range(100):
        now[0] += 0.001
        asks.append(asyncio.create_task(views.get(("explain", f"s{i:04d}"))))
        await asyncio.sleep(0)  # the handler has asked
    now[0] += 1.0
    assert views.due()
    views.build(engine, _checkpoint(engine), Decisions(), 0)
    view = await asks[-1]
    assert view is not None
    assert sorted(view.explains) == [f"s{i:04d}" for i in range(100 - MAX_PARTS, 100)]
    for task in asks:
        task.cancel()


async def test_the_list_of_many_shops_is_read_a_slice_per_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(views_module, "STEP_BUDGET_S", 0.0)  # one slice (STEP_SHOPS) a call
    engine = _engine(1000)
    views = Views()
    asked = asyncio.create_task(views.get(LIST))
    await asyncio.sleep(0)
    calls = 0
    while True:
        assert views.due()
        views.build(engine, _checkpoint(engine), Decisions(), 0)
        calls += 1
        if not views.building:
            break
        assert views.latest is None, "published before the list was read"
    assert calls == -(-1000 // views_module.STEP_SHOPS)
    view = await asked
    assert view is not None and view.summaries is not None
    assert [s["id"] for s in view.summaries] == sorted(engine.shops)


async def test_a_shops_grey_tests_are_a_part_of_the_view_like_its_explanation() -> None:
    """`GET /api/shops/{id}/experiment` reads ("experiment", id): built only when asked,
    and counted among MAX_PARTS with the shops and explanations."""
    sc = grey_scenario()
    views = Views()
    asked = asyncio.create_task(views.get(("experiment", SHOP)))
    await asyncio.sleep(0)
    assert views.due()
    views.build(sc.engine, _checkpoint(sc.engine), Decisions(), sc.now)
    view = await asked
    assert view is not None and view.has(("experiment", SHOP))
    assert view.shops == {} and view.explains == {}
    tests = view.part("experiment")[SHOP]
    assert tests == experiments_view(SHOP, sc.engine.shop(SHOP).state.experiments, sc.now)
