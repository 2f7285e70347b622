"""A rolling upgrade and a rollback under traffic (issue 25, docs/operations.md "Roll out a new
version"): three instances in one consumer group start on the previous release, are upgraded
one at a time to this checkout, then rolled back one at a time, while the chaos driver keeps
producing; the outputs must satisfy contract §6 (tests/chaos_check.py) and no shop may be
set aside. Old and new share the checkpoint rows throughout: each reads what the other
wrote (daemon/core/snapshot.py, "Formats")."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import redis

from daemon.dev.stack import Broker
from tests.chaos import ChaosPlan, Release, run_chaos
from tests.e2e import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The previous release: main as it landed before checkpoint rows carried a format (format 2
# readers check the shop format only). A fixed commit, so the test means the same tomorrow.
PREVIOUS = "fc781116504fb786482fec3ab09f01bb1304ad7f"

PLAN = ChaosPlan(
    seed=25,
    seconds=20.0,
    uptime_s=(1.0, 3.0),
    warmup_s=3.0,
    tail_s=3.0,
    instances=3,
    partitions=6,
    signals=(signal.SIGTERM,),
)


@pytest.fixture
def previous_release(tmp_path: Path) -> Release:
    """The previous release's source, from this clone's history (`git archive`)."""
    folder = tmp_path / "previous"
    folder.mkdir()
    found = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{PREVIOUS}^{{commit}}"], check=False
    )
    assert found.returncode == 0, (
        f"the previous release {PREVIOUS} is not in this clone's history: clone the "
        "repository with its history (not --depth)"
    )
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", PREVIOUS], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    snapshot = (folder / "daemon/core/snapshot.py").read_text()
    assert "FORMAT = 2\n" in snapshot, "the previous release writes format 2"
    return Release((sys.executable, "-m", "daemon.cli"), folder)


@pytest.mark.timeout(300)
async def test_a_rolling_upgrade_and_back_keeps_contract_6(
    broker: Broker, redis_url: str, tmp_path: Path, previous_release: Release
) -> None:
    current = Release((sys.executable, "-m", "daemon.cli"), REPO)
    runs = tmp_path / "runs"
    runs.mkdir()
    verdict = await run_chaos(
        PLAN,
        bootstrap=broker.bootstrap,
        redis_url=redis_url,
        folder=runs,
        progress=print,
        releases=[previous_release, current, previous_release],
    )
    print(verdict.report(examples=5))
    figures = verdict.figures
    assert figures["kills"] == figures["restarts"] == 2 * PLAN.instances
    assert figures["crashes"] == 0
    assert figures["inquiries"] > 50 and figures["queued"] > 0, "the stream was too thin"
    assert figures["rejected"] == 0
    assert figures["final_exit_code"] == 0
    assert verdict.clean, verdict.report(examples=5)
    logs = {log: log.read_text(errors="replace") for log in runs.glob("i*/daemon.log")}
    assert len(logs) == PLAN.instances
    for log, text in logs.items():
        assert "shop_quarantined" not in text, f"{log}: a shop was set aside"

    with redis.Redis.from_url(redis_url) as client:
        states = [client.hget(key, "state") for key in client.scan_iter("*:meta")]
    metas = [orjson.loads(state) for state in states if state is not None]
    assert len(metas) == 4
    assert all("writer" not in meta and meta["format"] == 2 for meta in metas), (
        "the previous release wrote every shop last, after the new one had written it"
    )
