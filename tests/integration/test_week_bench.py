"""bench/week.py kept from rotting (issue 12, item 5): two virtual days of a scaled-down
`steady` on the big example shop, checkpointed to the session Redis as the daemon does. The
figures it prints must be what the engine and Redis hold; no ratio and no time is asserted
(the bench reports them)."""

from __future__ import annotations

from pathlib import Path

from bench.week import DayFigures, ratios, row, run_week
from daemon.config import load_shop_file

SHOPS = Path(__file__).resolve().parents[2] / "config" / "shops"


def test_two_days_are_checkpointed_to_redis_and_measured_at_each_midnight(
    redis_url: str,
) -> None:
    reported: list[DayFigures] = []
    days = run_week(
        load_shop_file(SHOPS / "big.toml"), redis_url, days=2, scale=0.05, report=reported.append
    )
    assert reported == days
    assert [d.day for d in days] == [1, 2]
    first, second = days
    assert 0 < first.events < second.events
    assert 0 < first.checkpoints < second.checkpoints
    for day in days:
        # Redis holds the engine's rows: a buyer row per buyer, a seen id per dedup id;
        # the outbox is empty once acknowledged (meta, agents, buyers, seen + 4 marks)
        assert day.redis_parts["buyers"] == day.buyers > 0
        assert day.redis_parts["seen"] == day.dedup
        assert day.redis_keys == 8
        assert day.stale == 0
        assert 0 < day.conversion <= day.sticky <= day.buyers
        assert day.engine_bytes > 0
        assert row(day).startswith(f"| {day.day} |")
    assert ratios(days)[-1].startswith("day2/day1 redis rows = ")
