"""Start-up in any order, and the exit codes (contract §6; docs/daemon.md, "Start-up order and
exit codes").

A daemon started before Kafka or Redis listens stays up, answers /healthz 200 and /readyz
503, and routes once they come, whichever comes first. SIGTERM during that wait exits 0.
A taken HTTP port is one log line and exit code 3; an unexpected failure is one log line
naming it and exit code 1; a configuration error, only, is exit code 2
(tests/integration/test_kafka_plumbing.py has the input topics that disagree).

Each test reserves the ports of a broker and a Redis of its own and starts them only when
it means to: the daemon is pointed at ports nobody listens on yet.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from daemon.dev.stack import HOST, Broker, RedisServer, free_port, write_daemon_config
from daemon.tools.topics_admin import create_topics
from tests.conftest import unique_topics
from tests.e2e import REPO, DaemonProcess, Wire, write_config

pytestmark = pytest.mark.e2e

SHOP = """
id = "early"
[[agents]]
id = "a1"
[[groups]]
name = "g"
agents = ["a1"]
"""


@pytest.fixture
def late(tmp_path: Path) -> Iterator[tuple[Broker, RedisServer]]:
    """A broker and a Redis of this test's own, their ports reserved, neither started."""
    broker = Broker(log_dir=tmp_path / "broker")
    redis = RedisServer(log_dir=tmp_path / "redis")
    try:
        yield broker, redis
    finally:
        redis.stop()
        broker.stop()


def events(process: DaemonProcess) -> list[str]:
    """The `event` of every line the daemon logged so far (each line must be JSON)."""
    text = process.log_path.read_text(errors="replace") if process.log_path.exists() else ""
    return [orjson.loads(line)["event"] for line in text.splitlines() if line.strip()]


def wait_for_line(process: DaemonProcess, event: str, within: float = 30.0) -> None:
    """Until the daemon has logged `event`; it must stay up meanwhile."""
    deadline = time.monotonic() + within
    while event not in events(process):
        assert process.proc is not None and process.proc.poll() is None, process.log_tail()
        assert time.monotonic() < deadline, f"no {event} in {within}s:\n{process.log_tail()}"
        time.sleep(0.1)


def wait_ready(process: DaemonProcess, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while process.get("/readyz")[0] != 200:
        assert process.proc is not None and process.proc.poll() is None, process.log_tail()
        assert time.monotonic() < deadline, f"not ready in {within}s:\n{process.log_tail()}"
        time.sleep(0.2)


def assert_up_not_ready(process: DaemonProcess) -> None:
    assert process.proc is not None and process.proc.poll() is None, process.log_tail()
    assert process.get("/healthz")[0] == 200
    assert process.get("/readyz")[0] == 503


@pytest.mark.parametrize(
    "order",
    [("kafka",), ("redis",), ("kafka", "redis"), ("redis", "kafka")],
    ids=["kafka-late", "redis-late", "kafka-then-redis", "redis-then-kafka"],
)
async def test_a_daemon_started_first_waits_and_routes_when_they_come(
    order: tuple[str, ...], late: tuple[Broker, RedisServer], tmp_path: Path
) -> None:
    """Started before what `order` names, the daemon stays up (/healthz 200, /readyz 503)
    and says what it waits for; they come in that order (Kafka without its topics at
    first), and it becomes ready and routes an inquiry."""
    broker, redis = late
    topics = unique_topics()
    if "kafka" not in order:
        broker.start()
        await create_topics(broker.bootstrap, topics, partitions=2)
    if "redis" not in order:
        redis.start()
    config = write_config(
        tmp_path, bootstrap=broker.bootstrap, redis_url=redis.url, topics=topics,
        shops={"early": SHOP},
    )  # fmt: skip
    process = DaemonProcess(config).start(ready="/healthz")
    try:
        for name in order:
            # what the daemon logs while it waits for the first one still away
            wait_for_line(process, "kafka_unreachable" if not broker.running else "restore_failed")
            assert_up_not_ready(process)
            if name == "kafka":
                broker.start()
                wait_for_line(process, "input_topics_missing")  # an empty broker
                assert_up_not_ready(process)
                await create_topics(broker.bootstrap, topics, partitions=2)
            else:
                redis.start()
        wait_ready(process)
        async with Wire(broker.bootstrap, topics, "early") as wire:
            await wire.status("a1", "online")
            await wire.inquiry("b1")
            assigned = await wire.assignment("b1", timeout=30)
        assert assigned["agent_id"] == "a1"
        logged = events(process)
        if "kafka" in order:
            assert logged.index("kafka_reachable") < logged.index("service_started")
    finally:
        code, _ = process.stop()
    assert code == 0, process.log_tail()


def test_sigterm_while_waiting_for_kafka_exits_0_within_ten_seconds(
    late: tuple[Broker, RedisServer], tmp_path: Path
) -> None:
    broker, redis = late
    redis.start()
    config = write_config(
        tmp_path, bootstrap=broker.bootstrap, redis_url=redis.url, topics=unique_topics(),
        shops={"early": SHOP},
    )  # fmt: skip
    process = DaemonProcess(config).start(ready="/healthz")
    wait_for_line(process, "kafka_unreachable")
    time.sleep(1.0)  # into the backoff's longer waits
    code, took = process.stop()
    assert code == 0 and took < 10, (took, process.log_tail())
    assert events(process)[-1] == "service_stopped"


def _run(config: Path, *prelude: str) -> subprocess.CompletedProcess[str]:
    """`fenliu run --config CONFIG` in a subprocess, after the Python lines of `prelude`."""
    script = "\n".join(
        ["import sys", "from daemon.cli import main", *prelude,
         f"sys.exit(main(['run', '--config', {str(config)!r}]))"]
    )  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip


def _nobody_config(folder: Path, http_port: int | None = None) -> Path:
    """A daemon configuration whose Kafka and Redis ports nobody listens on."""
    return write_daemon_config(
        folder, bootstrap=f"{HOST}:{free_port()}", redis_url=f"redis://{HOST}:{free_port()}/0",
        shops={"early": SHOP}, topics=unique_topics(), http_port=http_port,
    )  # fmt: skip


def test_a_taken_http_port_is_one_log_line_and_exit_code_3(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run(_nobody_config(tmp_path, http_port=port))
    assert done.returncode == 3, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # no traceback
    line = orjson.loads(lines[0])
    assert line["event"] == "http_listen_failed" and line["level"] == "error"
    assert line["listen"] == f"{HOST}:{port}"
    assert "address already in use" in line["error"].lower()


def test_an_unexpected_failure_is_named_in_one_log_line_and_exit_code_1(tmp_path: Path) -> None:
    """A bug (injected: the service's `run` raises) is not a configuration error."""
    done = _run(
        _nobody_config(tmp_path),
        "from daemon.service import run",
        "async def broken(self): raise RuntimeError('a bug')",
        "run.Service.run = broken",
    )
    assert done.returncode == 1, done.stderr
    lines = [orjson.loads(line) for line in done.stderr.splitlines()]  # JSON, no raw traceback
    assert [line["event"] for line in lines] == ["service_crashed"]
    assert lines[0]["error"] == "RuntimeError: a bug" and lines[0]["level"] == "critical"
