"""Start-up's waiting (daemon.service.startup): its log stays bounded however long Kafka is
away, and a stop request ends the wait, the attempt in hand included."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from daemon.service.logs import get_logger
from daemon.service.startup import STOP_POLL_S, Stopped, WaitLog, unless_stopped


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_long_wait_writes_a_line_a_minute_with_the_attempts_held_back() -> None:
    clock = Clock()
    waits = WaitLog(get_logger(), every_s=60.0, clock=clock)
    with capture_logs() as logs:
        for _ in range(1000):  # an attempt every 0.5 s for 500 s
            waits.failed("kafka_unreachable", error="refused")
            clock.now += 0.5
        waits.ended()
    lines = [(e["event"], e.get("repeated"), e.get("attempts")) for e in logs]
    assert lines[0] == ("kafka_unreachable", None, 1)
    assert lines[1] == ("kafka_unreachable", 119, 121)  # 119 held back in the first minute
    assert len(lines) == 1 + 8 + 1  # one line, then one a minute, then the end
    assert lines[-1] == ("kafka_reachable", None, 1000)
    assert logs[-1]["waited_s"] == 500.0


def test_another_failure_is_written_at_once() -> None:
    clock = Clock()
    waits = WaitLog(get_logger(), clock=clock)
    with capture_logs() as logs:
        waits.failed("kafka_unreachable", error="refused")
        clock.now += 1
        waits.failed("kafka_unreachable", error="refused")  # held back
        waits.failed("input_topics_missing", topics=["t.inquiries"])
        waits.failed("input_topics_missing", topics=["t.inquiries"])  # held back
    assert [e["event"] for e in logs] == ["kafka_unreachable", "input_topics_missing"]
    assert logs[1]["attempts"] == 3 and logs[1]["waiting_s"] == 1.0


def test_a_wait_that_never_failed_logs_nothing() -> None:
    with capture_logs() as logs:
        WaitLog(get_logger()).ended()
    assert logs == []


async def test_a_stop_request_ends_the_attempt_in_hand() -> None:
    """An attempt that would hang (a broker that never answers) is cancelled once asked."""
    stop = False
    hung = asyncio.get_running_loop().create_future()

    async def attempt() -> None:
        await hung  # never set

    waiting = asyncio.create_task(unless_stopped(attempt(), lambda: stop))
    await asyncio.sleep(STOP_POLL_S * 2)
    assert not waiting.done()
    stop = True
    with pytest.raises(Stopped):
        await asyncio.wait_for(waiting, timeout=30)
    assert hung.cancelled()


async def test_without_a_stop_the_result_or_error_comes_through() -> None:
    async def answer() -> int:
        await asyncio.sleep(STOP_POLL_S * 1.5)
        return 7

    async def refuse() -> None:
        raise OSError("refused")

    assert await unless_stopped(answer(), lambda: False) == 7
    with pytest.raises(OSError, match="refused"):
        await unless_stopped(refuse(), lambda: False)
