"""The abuse soak, short version: two minutes of normal traffic, every kind of bad record
(oversized ones included) and a /metrics flood through one real daemon (tests/soak.py).
Nothing may crash or stop it: every bad record is dead-lettered, within bounds, the good
traffic keeps contract §6, and the logs stay bounded. The daemon's RSS is not judged here
(too noisy in two minutes): `bench/soak.py` reports it over thirty."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.dev.stack import Broker
from tests.soak import (
    BAD_KINDS,
    BIG_KINDS,
    DEAD_LETTER_BOUND,
    LOG_LINE_LIMIT,
    LOG_RATIO,
    RAW_LIMIT,
    SoakPlan,
    run_soak,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PLAN = SoakPlan(seconds=120.0, seed=3, flood_rate=100.0, rss_every_s=2.0, settle_s=60.0)


@pytest.mark.timeout(480)
async def test_abuse_soak_stops_nothing(broker: Broker, redis_url: str, tmp_path: Path) -> None:
    """Two minutes of abuse: no crash, every bad record (by topic, partition and offset) in
    the dead-letter topic with at most 16 KiB of its raw, no good record there, no good
    inquiry lost and contract §6 clean, no log line over 4 KiB and far fewer lines about
    rejected records than bad records."""
    result = await run_soak(
        PLAN, bootstrap=broker.bootstrap, redis_url=redis_url, folder=tmp_path, progress=print
    )
    report = result.report()
    print(report)
    # the soak did what it says: every kind, many times; traffic; a flood that was answered
    assert set(result.produced) == {*BAD_KINDS, *BIG_KINDS}, result.produced
    assert min(result.produced[k] for k in BAD_KINDS) >= 10, result.produced
    assert result.verdict.figures["inquiries"] > 100, "the good stream was too thin"
    assert int(result.flood.get("statuses", {}).get("200", 0)) > 1000, result.flood
    # the targets
    assert not result.facts.crashes, report
    assert result.exit_code == 0, "SIGTERM at the end: exit 0 (contract §6)\n" + report
    assert not result.missing, f"bad records without a dead letter: {result.missing}\n{report}"
    assert not result.unexpected, f"good records dead-lettered\n{report}"
    assert result.verdict.counts()["lost"] == 0, report
    assert result.verdict.clean, report
    for dead in result.dead:
        assert dead.raw_bytes <= RAW_LIMIT and dead.key_bytes <= RAW_LIMIT, dead
        assert dead.record_bytes <= DEAD_LETTER_BOUND, dead
        sent = result.sent.get(dead.source)
        assert sent is None or sent.value_size <= RAW_LIMIT or dead.truncated, (sent, dead)
    assert result.log.longest <= LOG_LINE_LIMIT, report
    assert result.log.rejection_lines * LOG_RATIO <= result.bad, report
