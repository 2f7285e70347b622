"""Chaos bench: daemons stopped N times under a continuous stream, then contract §6 checked.

    .venv/bin/python bench/chaos.py [--kills 20] [--seed 1] [--seconds 30]
    .venv/bin/python bench/chaos.py --instances 3 --kills 20 [--redis cluster]

Starts a Tansu broker and a redis-server (or, with `--redis cluster`, a three-master Redis
Cluster) on free loopback ports and runs the chaos suite of tests/chaos.py: four shops with
queueing on and tight caps get a seeded stream of inquiries, messages, agent status flips,
leaves and orders. With one instance the daemon is SIGKILLed after a random uptime and
restarted, N times. With `--instances 3` the daemons share six partitions in one consumer
group and each stop hits a random instance — or now and then two at once — with SIGKILL or
SIGTERM, so partitions keep moving between live instances. Then every agent goes online,
the stream stops, the run settles, and every output topic is read from the beginning and
checked (tests/chaos_check.py): nothing lost, no double assignment, identical duplicates,
caps held, queue order kept, no forgotten session, no instance that died on its own.

Prints progress while it runs, then the verdict with examples and figures (inquiries,
outputs, duplicates, stops, restarts, recovery times). Exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.dev.stack import Broker, RedisServer
from tests.chaos import ChaosPlan, run_chaos
from tests.redis_cluster import RedisCluster


def say(text: str) -> None:
    """Progress and results, printed at once."""
    print(text, flush=True)


async def main(plan: ChaosPlan, redis_kind: str, *, keep: bool) -> int:
    say(f"fenliu chaos bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    say(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    say(
        f"seed {plan.seed}, {plan.instances} instance(s) on {plan.partitions} partitions, "
        f"{plan.kills} stops by {'/'.join(s.name for s in plan.signals)}, uptime before each "
        f"{plan.uptime_s[0]:g}–{plan.uptime_s[1]:g}s, redis {redis_kind}"
    )
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(Broker())
        if keep:
            tmp = Path(tempfile.mkdtemp(prefix="fenliu-chaos-"))
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if redis_kind == "cluster":
            url = stack.enter_context(RedisCluster(tmp / "cluster")).url
        else:
            url = stack.enter_context(RedisServer()).url
        say(f"broker {broker.bootstrap}, redis {url}")
        verdict = await run_chaos(
            plan,
            bootstrap=broker.bootstrap,
            redis_url=url,
            folder=tmp,
            progress=say,
            redis_cluster=redis_kind == "cluster",
        )
    say(verdict.report(examples=5))
    say(f"total {time.monotonic() - started:.0f}s")
    return 0 if verdict.clean else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="stops (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of stream and stops")
    parser.add_argument("--seconds", type=float, default=30.0, help="shortest drive (s)")
    parser.add_argument("--max-uptime", type=float, default=5.0, help="longest uptime (s)")
    parser.add_argument("--instances", type=int, default=1, help="daemons in the group")
    parser.add_argument("--redis", choices=("single", "cluster"), default="single")
    parser.add_argument("--keep", action="store_true", help="keep the daemons' logs")
    args = parser.parse_args()
    fleet = args.instances > 1
    plan = ChaosPlan(
        seed=args.seed,
        seconds=args.seconds,
        kills=args.kills,
        uptime_s=(0.5, args.max_uptime),
        instances=args.instances,
        partitions=6 if fleet else 4,
        signals=(signal.SIGKILL, signal.SIGTERM) if fleet else (signal.SIGKILL,),
    )
    sys.exit(asyncio.run(main(plan, args.redis, keep=args.keep)))
