"""End-to-end helpers: the real `fenliu run` process, spoken to only through Kafka and HTTP."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from daemon.config import TopicsConfig
from daemon.dev.stack import write_daemon_config

REPO = Path(__file__).resolve().parents[1]
TWO_AGENTS_SHOP = """
id = "{id}"
sticky_window = 0
[queue]
enabled = true
default_cap = 2
session_timeout = "60s"
update_interval = "1s"
[[agents]]
id = "a1"
[[agents]]
id = "a2"
[[groups]]
name = "g"
agents = ["a1", "a2"]
"""  # a shop file (`.format(id=...)`): two agents of cap 2 in one queued group


SESSION_TIMEOUT_S = 2
"""The daemons' consumer session timeout (`[kafka] session_timeout`) unless a test sets its
own: the daemon's default is 6 s, and Tansu answers each JoinGroup after about half of it
(at least 1 s), which every start-up and rebalance of a test would wait for."""


def kafka_only_config(folder: Path, bootstrap: str, topics: TopicsConfig) -> Path:
    """A fenliu.toml for the commands that talk to Kafka only (`topics create`, `dead-letter
    replay`): the small example shop, these topics, and a Redis URL nobody listens on."""
    (folder / "shops").mkdir()
    shutil.copy(REPO / "config" / "shops" / "small.toml", folder / "shops" / "small.toml")
    names = "\n".join(f'{field} = "{name}"' for field, name in topics)
    path = folder / "fenliu.toml"
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\n\n[kafka.topics]\n{names}\n\n'
        '[redis]\nurl = "redis://127.0.0.1:6399/0"\n',
        encoding="utf-8",
    )
    return path


def run_fenliu(*args: str) -> subprocess.CompletedProcess[str]:
    """`fenliu ARGS...` in a subprocess from the checkout: its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        capture_output=True, text=True, timeout=30, check=False, cwd=REPO,
    )  # fmt: skip


def write_config(
    folder: Path,
    *,
    bootstrap: str,
    redis_url: str,
    topics: TopicsConfig,
    shops: dict[str, str],
    group_id: str | None = None,
    redis_cluster: bool = False,
    kafka_extra: str = "",
    key_prefix: str | None = None,
) -> Path:
    """A fenliu.toml and shop files (name -> TOML text) in `folder`; returns the toml path.

    The Redis key prefix is named after the topics unless given, and the consumer group after
    the key prefix, so daemons of different tests never restore each other's shops, nor wait
    for each other in one group (a daemon stopped without LeaveGroup stays a member until its
    session times out). The session timeout is `SESSION_TIMEOUT_S` unless `kafka_extra`
    sets one.
    """
    if "session_timeout" not in kafka_extra:
        kafka_extra = f'session_timeout = "{SESSION_TIMEOUT_S}s"\n{kafka_extra}'
    key_prefix = key_prefix or topics.inquiries.split(".")[0]
    return write_daemon_config(
        folder, bootstrap=bootstrap, redis_url=redis_url, shops=shops, topics=topics,
        group_id=group_id or f"fenliu-e2e-{key_prefix}", key_prefix=key_prefix,
        redis_cluster=redis_cluster, kafka_extra=kafka_extra,
    )  # fmt: skip


async def until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Wait until `predicate()` holds, looking every 0.2 s; after `timeout` seconds, an
    AssertionError saying what did not happen."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout:g}s")
        await asyncio.sleep(0.2)


def fleet_of_two(folder: Path, **config: Any) -> list[DaemonProcess]:
    """Two instances of one fleet, not started: each with a fenliu.toml of its own in
    `folder`/x and `folder`/y, written by `write_config(**config)` (same group, shops,
    topics and Redis; each its own HTTP port and log)."""
    daemons = []
    for name in ("x", "y"):
        (folder / name).mkdir(parents=True)
        daemons.append(DaemonProcess(write_config(folder / name, **config)))
    return daemons


class DaemonProcess:
    """`fenliu run --config PATH` as a child process: this checkout's (`python -m daemon.cli`)
    unless `command` names another `fenliu`, such as a runtime-only install's."""

    def __init__(
        self, config: Path, *, command: Sequence[str] | None = None, cwd: Path = REPO
    ) -> None:
        self.config = config
        self.command = list(command or [sys.executable, "-m", "daemon.cli"])
        self.cwd = cwd
        self.log_path = config.parent / "daemon.log"
        text = config.read_text()
        self.http = text.split('listen = "', 1)[1].split('"', 1)[0]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_within: float = 30.0, *, ready: str = "/readyz") -> DaemonProcess:
        """Start and wait until `ready` (/readyz; /healthz for an instance that may own
        nothing) answers 200."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.command, "run", "--config", str(self.config)],
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited early:\n{self.log_tail()}")
            if self.get(ready)[0] == 200:
                return self
            time.sleep(0.2)
        raise AssertionError(f"daemon not ready in {ready_within}s:\n{self.log_tail()}")

    def get(self, path: str, method: str = "GET") -> tuple[int, str]:
        """An HTTP request to the daemon: (status, body); status 0 when nobody answers."""
        request = urllib.request.Request(f"http://{self.http}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, OSError):
            return 0, ""

    def fresh_metrics(self, within: float = 15.0) -> str:
        """/metrics from a snapshot the daemon began after this call (it answers the
        latest, up to a second or so old, with its age in `fenliu_metrics_age_seconds`)."""
        asked = time.monotonic()
        deadline = asked + within
        while True:
            sent = time.monotonic()
            status, text = self.get("/metrics")
            age = next(
                (float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith("fenliu_metrics_age_seconds ")), None,
            )  # fmt: skip
            if status == 200 and age is not None and sent - age >= asked:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"no fresh /metrics within {within}s:\n{self.log_tail()}")
            time.sleep(0.2)

    def signal(self, sig: signal.Signals) -> None:
        """Send a signal to the daemon."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed, saved or committed."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        return code, time.monotonic() - started

    def log_tail(self, lines: int = 40) -> str:
        """The end of the daemon's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Wire:
    """Produces input events and reads outputs of one shop through real Kafka."""

    def __init__(
        self, bootstrap: str, topics: TopicsConfig, shop: str, also: tuple[str, ...] = ()
    ) -> None:
        self.bootstrap, self.topics, self.shop = bootstrap, topics, shop
        self.shops = {shop, *also}
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
        self.consumer = AIOKafkaConsumer(
            topics.assignments,
            topics.queue_updates,
            topics.dead_letter,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
        )
        self.seen: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []  # every event produced, in order
        self._n = 0

    async def __aenter__(self) -> Wire:
        await self.producer.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.producer.stop()

    async def send(self, topic: str, body: dict[str, Any] | bytes, key: str | None = None) -> str:
        """Produce one record; a dict gets id/shop_id/ts filled in. Returns the id."""
        if isinstance(body, dict):
            self._n += 1
            body = {
                "id": f"{self.shop}-{self._n}-{time.monotonic_ns()}",
                "shop_id": self.shop,
                "ts": int(time.time() * 1000),
                **body,
            }
            value = orjson.dumps(body)
            event_id = str(body["id"])
            self.sent.append(body)
        else:
            value, event_id = body, ""
        record_key = (key if key is not None else self.shop).encode()
        await (await self.producer.send(topic, value, key=record_key))
        return event_id

    async def inquiry(self, buyer: str, **fields: Any) -> str:
        """A buyer asks for service."""
        return await self.send(
            self.topics.inquiries, {"type": "inquiry", "buyer_id": buyer, **fields}
        )

    async def status(self, agent: str, status: str) -> str:
        """An agent's reception state changes."""
        body = {"type": "agent_status", "agent_id": agent, "status": status}
        return await self.send(self.topics.agent_status, body)

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0, count: int = 1
    ) -> list[dict[str, Any]]:
        """Output events of this shop matching `predicate`, once `count` of them arrived."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.seen if predicate(e)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{count} matching outputs not seen in {timeout}s: {self.seen}"
                )
            batch = await self.consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    event = orjson.loads(record.value)
                    if event.get("shop_id") in self.shops:
                        self.seen.append(event)

    async def assignment(self, buyer: str, timeout: float = 20.0, nth: int = 1) -> dict[str, Any]:
        """The buyer's nth assignment."""
        found = await self.wait_for(
            lambda e: e["type"] == "assignment" and e["buyer_id"] == buyer, timeout, nth
        )
        return found[nth - 1]

    async def settle(self, seconds: float) -> None:
        """Collect outputs for a while."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0)
            batch = await self.consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    event = orjson.loads(record.value)
                    if event.get("shop_id") in self.shops:
                        self.seen.append(event)
