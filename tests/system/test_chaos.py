"""The chaos suite, short version: the real daemon SIGKILLed a few times under a continuous
stream for three shops; afterwards every output topic, read from the beginning, must satisfy
contract §6 (tests/chaos_check.py says how each guarantee is judged)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from daemon.dev.stack import Broker
from tests.chaos import ChaosPlan, run_chaos
from tests.redis_cluster import RedisCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PLAN = ChaosPlan(seed=7, seconds=30.0, kills=3, uptime_s=(0.5, 2.5), tail_s=2.0)


@pytest.mark.timeout(150)
async def test_sigkilled_daemon_keeps_contract_6(
    broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    """Three SIGKILLs and restarts during 30 s of traffic lose, double-assign, reorder and
    over-cap nothing; duplicates are identical."""
    verdict = await run_chaos(
        PLAN, bootstrap=broker.bootstrap, redis_url=redis_url, folder=tmp_path, progress=print
    )
    print(verdict.report(examples=5))
    figures = verdict.figures
    assert figures["kills"] == PLAN.kills and figures["restarts"] == PLAN.kills
    assert figures["inquiries"] > 50 and figures["queued"] > 0, "the stream was too thin"
    assert figures["rejected"] == 0, "the driver produces only valid events"
    assert figures["final_exit_code"] == 0, "SIGTERM at the end: exit 0 (contract §6)"
    assert verdict.clean, verdict.report(examples=5)


FLEET = ChaosPlan(
    seed=11,
    seconds=30.0,
    kills=3,
    uptime_s=(2.0, 5.0),
    tail_s=3.0,
    instances=3,
    partitions=6,
    signals=(signal.SIGKILL, signal.SIGTERM),
)


@pytest.mark.timeout(240)
async def test_fleet_on_redis_cluster_keeps_contract_6(
    broker: Broker, redis_cluster: RedisCluster, cluster_url: str, tmp_path: Path
) -> None:
    """Three instances in one group over six partitions, on a Redis Cluster: three stops
    (SIGKILL or SIGTERM) move partitions between live instances under traffic; no instance
    dies on its own (issue 10's crash cascade), and contract §6 holds over the outputs."""
    verdict = await run_chaos(
        FLEET,
        bootstrap=broker.bootstrap,
        redis_url=cluster_url,
        folder=tmp_path,
        progress=print,
        redis_cluster=True,
    )
    print(verdict.report(examples=5))
    figures = verdict.figures
    assert figures["kills"] >= FLEET.kills and figures["restarts"] == figures["kills"]
    assert figures["inquiries"] > 50 and figures["queued"] > 0, "the stream was too thin"
    assert figures["rejected"] == 0, "the driver produces only valid events, on murmur2"
    assert figures["final_exit_code"] == 0, "SIGTERM at the end: exit 0 (contract §6)"
    assert verdict.clean, verdict.report(examples=5)
