"""An HTTP flood on one daemon, in a process of its own: keep-alive clients on /metrics, and
now and then on /api/*, until SIGTERM.

    python -m tests.flood --address 127.0.0.1:PORT --stats PATH [--clients 16] [--rate 200]

Used by the abuse soak (tests/soak.py), which starts it as a child process so that the
scrapers never share an event loop (or a GIL) with the soak's producers and readers. Each
client is a thread with one `http.client` connection kept alive across requests; it sends
`--rate / --clients` requests a second (`--rate 0`: as fast as answers come), every
`--api-every`-th of them to the JSON API (the shop list, a shop's view, its explain), the
others to /metrics. A refused or broken connection is counted and opened again after a short
pause, so a daemon that restarts is flooded again as soon as it listens.

The figures — requests, answers by status, connection errors, bytes, the slowest answer and
the 50th and 99th percentile of a bounded sample of answer times — are written as JSON to
`--stats` every two seconds (replacing the file at once) and a last time at exit.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

SAMPLE = 20_000  # answer times kept per client for the percentiles (a reservoir)
API_PATHS = ("/api/shops", "/api/shops/{shop}", "/api/shops/{shop}/explain")


class Client(threading.Thread):
    """One keep-alive connection asking /metrics (and /api/*) until `stop` is set."""

    def __init__(self, n: int, args: argparse.Namespace, stop: threading.Event) -> None:
        super().__init__(name=f"flood-{n}", daemon=True)
        self.args, self.stop, self.rng = args, stop, random.Random(n)
        self.host, port = args.address.rsplit(":", 1)
        self.port = int(port)
        self.requests = self.errors = self.bytes = 0
        self.statuses: Counter[int] = Counter()
        self.times: list[float] = []
        self.slowest = 0.0

    def path(self) -> str:
        if self.args.api_every and self.requests % self.args.api_every == 0:
            shop = self.rng.choice(self.args.shops)
            return self.rng.choice(API_PATHS).format(shop=shop)
        return "/metrics"

    def run(self) -> None:
        interval = self.args.clients / self.args.rate if self.args.rate > 0 else 0.0
        connection: http.client.HTTPConnection | None = None
        next_at = time.monotonic() + self.rng.uniform(0, interval)
        while not self.stop.is_set():
            if interval:
                self.stop.wait(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at + interval, time.monotonic() - interval)
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
            self.requests += 1
            started = time.perf_counter()
            try:
                connection.request("GET", self.path())
                answer = connection.getresponse()
                body = answer.read()
            except (OSError, http.client.HTTPException):
                self.errors += 1
                connection.close()
                connection = None
                self.stop.wait(0.2)
                continue
            took = time.perf_counter() - started
            self.statuses[answer.status] += 1
            self.bytes += len(body)
            self.slowest = max(self.slowest, took)
            if len(self.times) < SAMPLE:
                self.times.append(took)
            else:
                self.times[self.rng.randrange(SAMPLE)] = took
            if answer.will_close:
                connection.close()
                connection = None
        if connection is not None:
            connection.close()


def stats(clients: list[Client], started: float) -> dict[str, Any]:
    """The figures of every client together."""
    statuses: Counter[int] = Counter()
    times: list[float] = []
    for c in clients:
        statuses.update(c.statuses)
        times.extend(c.times)
    times.sort()

    def pct(q: float) -> float:
        return times[min(len(times) - 1, int(q * len(times)))] if times else 0.0

    return {
        "seconds": time.monotonic() - started,
        "requests": sum(c.requests for c in clients),
        "errors": sum(c.errors for c in clients),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "bytes": sum(c.bytes for c in clients),
        "p50_ms": pct(0.50) * 1000,
        "p99_ms": pct(0.99) * 1000,
        "max_ms": max((c.slowest for c in clients), default=0.0) * 1000,
    }


def write_stats(path: Path, figures: dict[str, Any]) -> None:
    """Replace `path` with the figures at once (a reader never sees half a file)."""
    part = path.with_suffix(".part")
    part.write_bytes(orjson.dumps(figures))
    os.replace(part, path)


def read_stats(path: Path) -> dict[str, Any]:
    """The last figures a flood wrote to `path` (empty before its first write)."""
    try:
        figures: dict[str, Any] = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True, help="host:port of the daemon's HTTP")
    parser.add_argument("--stats", type=Path, required=True, help="where to write figures")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s, 0 = unpaced")
    parser.add_argument("--api-every", type=int, default=10, help="every nth request: /api")
    parser.add_argument("--shops", default="", help="comma-separated shop ids for /api")
    args = parser.parse_args()
    args.shops = [s for s in args.shops.split(",") if s] or ["none"]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    started = time.monotonic()
    clients = [Client(n, args, stop) for n in range(args.clients)]
    for c in clients:
        c.start()
    while not stop.wait(2.0):
        write_stats(args.stats, stats(clients, started))
    for c in clients:
        c.join(timeout=15)
    with contextlib.suppress(OSError):
        write_stats(args.stats, stats(clients, started))


if __name__ == "__main__":
    main()
