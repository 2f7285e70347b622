"""Chaos bench: the daemon SIGKILLed N times under a continuous stream, then CONTRACT 6 checked.

    .venv/bin/python bench/chaos.py [--kills 20] [--seed 1] [--seconds 30]

Starts a Tansu broker and a redis-server on free loopback ports and runs the chaos suite of
tests/chaos.py: three shops with queueing on and tight caps get a seeded stream of
inquiries, messages, agent status flips, leaves and orders while the daemon is killed with
SIGKILL after a random uptime and restarted, N times; then every agent goes online, the
stream stops, the run settles, and every output topic is read from the beginning and
checked (tests/chaos_check.py): nothing lost, no double assignment, identical duplicates,
caps held, queue order kept, no forgotten session.

Prints progress while it runs, then the verdict with examples and figures (inquiries,
outputs, duplicates, kills, restarts, recovery times). Exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.devstack import Broker, RedisServer
from tests.chaos import ChaosPlan, run_chaos


def say(text: str) -> None:
    """Progress and results, printed at once."""
    print(text, flush=True)


async def main(plan: ChaosPlan) -> int:
    say(f"fenliu chaos bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    say(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    say(
        f"seed {plan.seed}, {plan.kills} SIGKILLs, uptime before each kill "
        f"{plan.uptime_s[0]:g}–{plan.uptime_s[1]:g}s"
    )
    started = time.monotonic()
    with Broker() as broker, RedisServer() as redis, tempfile.TemporaryDirectory() as tmp:
        say(f"broker {broker.bootstrap}, redis {redis.url}")
        verdict = await run_chaos(
            plan, bootstrap=broker.bootstrap, redis_url=redis.url, folder=Path(tmp), progress=say
        )
    say(verdict.report(examples=5))
    say(f"total {time.monotonic() - started:.0f}s")
    return 0 if verdict.clean else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of stream and kills")
    parser.add_argument("--seconds", type=float, default=30.0, help="shortest drive (s)")
    parser.add_argument("--max-uptime", type=float, default=5.0, help="longest uptime (s)")
    args = parser.parse_args()
    plan = ChaosPlan(
        seed=args.seed, seconds=args.seconds, kills=args.kills, uptime_s=(0.5, args.max_uptime)
    )
    sys.exit(asyncio.run(main(plan)))
