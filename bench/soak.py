"""Abuse soak: one daemon under normal traffic, every kind of bad record and an HTTP flood
for N minutes; nothing may stop it (issue 23, contract §6).

    .venv/bin/python bench/soak.py [--minutes 30] [--seed 1] [--bad-rate 20] [--flood-rate 200]

Starts a Tansu broker and a redis-server on free loopback ports and runs tests/soak.py's
soak: the chaos suite's four shops get its seeded stream of inquiries, messages, leaves,
orders and agent status flips; beside it, bad records of every kind on each input topic in
turn — not JSON, JSON not an object, missing and mistyped fields, unknown types, unknown
shops, a key other than shop_id, unconfigured agents, misrouted partitions, non-UTF-8 values
and keys, control characters, no key, tombstones, deep nesting — 20 a second, and every
`--big-every` seconds a big one: a 100 KB key, 200 KB and 900 KB values, a value just under
Kafka's default 1 MiB and one just under what this broker takes (found at the start,
searched up to `--probe-mib`); 16 keep-alive clients flood /metrics and /api/* (200
requests a second in all) from a process of their own; the daemon's RSS is read every few
seconds.

Prints a progress line every 30 s, then the figures and a table of targets: no crash, every
bad record dead-lettered (by source topic, partition and offset), no good record
dead-lettered, no good inquiry lost and contract §6 otherwise clean (tests/chaos_check.py),
dead letters within 16 KiB of raw, no log line over 4 KiB, far fewer log lines about
rejected records than bad records, and RSS from minute 5 to minute 30 (1/6 of the run to
its end) within +10%. Exits 1 when a target is missed. `--keep` keeps the daemon's log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.dev.stack import Broker, RedisServer
from tests.soak import MIB, SoakPlan, run_soak


def say(text: str) -> None:
    """Progress and results, printed at once."""
    print(text, flush=True)


async def main(plan: SoakPlan, *, keep: bool) -> int:
    say(f"fenliu abuse soak — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    say(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    big = f"a big one every {plan.big_every_s:g}s" if plan.big_every_s else "no big ones"
    say(
        f"{plan.seconds / 60:g} min, seed {plan.seed}: {plan.bad_per_s:g} bad records/s and "
        f"{big}, flood {plan.flood_clients} clients at {plan.flood_rate:g} requests/s, "
        f"RSS every {plan.rss_every_s:g}s"
    )
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(Broker())
        redis = stack.enter_context(RedisServer())
        if keep:
            tmp = Path(tempfile.mkdtemp(prefix="fenliu-soak-"))
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        say(f"broker {broker.bootstrap}, redis {redis.url}, files in {tmp}")
        result = await run_soak(
            plan, bootstrap=broker.bootstrap, redis_url=redis.url, folder=tmp, progress=say
        )
    say(result.report())
    say(f"total {time.monotonic() - started:.0f}s")
    missed = [t.name for t in result.targets() if not t.met]
    say(f"verdict: {'all targets met' if not missed else 'MISSED ' + ', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="drive (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="seed of both streams")
    parser.add_argument("--bad-rate", type=float, default=20.0, help="small bad records/s")
    parser.add_argument("--big-every", type=float, default=5.0, help="s between big ones")
    parser.add_argument("--flood-clients", type=int, default=16)
    parser.add_argument("--flood-rate", type=float, default=200.0, help="requests/s, 0 = unpaced")
    parser.add_argument("--rss-every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--probe-mib", type=int, default=8, help="largest record probed (MiB)")
    parser.add_argument("--keep", action="store_true", help="keep the daemon's log")
    args = parser.parse_args()
    plan = SoakPlan(
        seconds=args.minutes * 60,
        seed=args.seed,
        bad_per_s=args.bad_rate,
        big_every_s=args.big_every,
        flood_clients=args.flood_clients,
        flood_rate=args.flood_rate,
        rss_every_s=args.rss_every,
        probe_ceiling=args.probe_mib * MIB,
    )
    sys.exit(asyncio.run(main(plan, keep=args.keep)))
