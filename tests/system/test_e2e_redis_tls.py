"""`fenliu run` with its Redis over TLS (contract §5): a daemon whose `redis.url` is
`rediss://:${PASSWORD_VARIABLE}@…?ssl_ca_certs=ca.pem` (the CA next to fenliu.toml) routes
and checkpoints through a TLS-only redis-server; one that trusts another CA stays up, not
ready, and says why in log lines that name TLS, never an outage, and never the password."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from daemon.config import TopicsConfig
from daemon.dev.stack import Broker
from daemon.service.logs import LINE_MAX
from daemon.tools.topics_admin import create_topics
from tests.conftest import unique_topics
from tests.e2e import DaemonProcess, Wire, write_config
from tests.tls import Certs, TlsRedis, make_certs

pytestmark = pytest.mark.e2e

PASSWORD = "redis-hunter2"
SHOP = """
id = "tls"
[[agents]]
id = "a1"
[[groups]]
name = "g"
agents = ["a1"]
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_redis(certs: Certs) -> Iterator[TlsRedis]:
    with TlsRedis(certs, PASSWORD) as server:
        yield server


async def _daemon(
    broker: Broker, server: TlsRedis, ca: Path, folder: Path
) -> tuple[DaemonProcess, TopicsConfig]:
    """A daemon of its own topics whose URL names the password by variable and the CA by
    a path relative to fenliu.toml."""
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=2)
    return _write(broker, server, ca, folder, topics), topics


def _write(
    broker: Broker, server: TlsRedis, ca: Path, folder: Path, topics: TopicsConfig
) -> DaemonProcess:
    folder.mkdir()
    shutil.copy(ca, folder / "ca.pem")
    url = f"rediss://:${{FENLIU_TEST_REDIS_PASSWORD}}@127.0.0.1:{server.port}/0?ssl_ca_certs=ca.pem"
    config = write_config(
        folder, bootstrap=broker.bootstrap, redis_url=url, topics=topics, shops={"tls": SHOP}
    )
    return DaemonProcess(config)


def _lines(process: DaemonProcess) -> list[dict[str, object]]:
    """The daemon's log, every line JSON and under 4 KiB, the password in none."""
    raw = process.log_path.read_bytes()
    assert PASSWORD.encode() not in raw
    lines = raw.splitlines()
    assert all(len(line) < LINE_MAX for line in lines)
    return [orjson.loads(line) for line in lines]


async def test_the_daemon_routes_and_checkpoints_over_tls(
    broker: Broker,
    tls_redis: TlsRedis,
    certs: Certs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FENLIU_TEST_REDIS_PASSWORD", PASSWORD)
    process, topics = await _daemon(broker, tls_redis, certs.ca, tmp_path / "good")
    process.start()
    try:
        async with Wire(broker.bootstrap, topics, "tls") as wire:
            await wire.status("a1", "online")
            await wire.inquiry("b1")
            assert (await wire.assignment("b1"))["agent_id"] == "a1"
        client = aioredis.Redis.from_url(tls_redis.tls_url(certs.ca))
        try:
            prefix = topics.inquiries.split(".")[0]
            buyers = await client.hgetall(f"{prefix}:{{tls}}:buyers")
        finally:
            await client.aclose()
        assert set(buyers) == {b"b1"}, "the checkpoint went to the TLS Redis"
    finally:
        code, _ = process.stop()
    assert code == 0
    started = next(line for line in _lines(process) if line["event"] == "service_started")
    assert started["redis"] == (
        f"rediss://:***@127.0.0.1:{tls_redis.port}/0?ssl_ca_certs={tmp_path / 'good' / 'ca.pem'}"
    )


async def test_a_wrong_ca_is_logged_as_tls_and_the_daemon_stays_up(
    broker: Broker,
    tls_redis: TlsRedis,
    certs: Certs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FENLIU_TEST_REDIS_PASSWORD", PASSWORD)
    process, _ = await _daemon(broker, tls_redis, certs.other_ca, tmp_path / "wrong")
    process.start(ready="/healthz")
    try:
        deadline = time.monotonic() + 30
        while b"tls: certificate verify failed" not in process.log_path.read_bytes():
            assert time.monotonic() < deadline, process.log_tail()
            await asyncio.sleep(0.2)
        assert process.get("/readyz")[0] == 503
    finally:
        code, _ = process.stop()
    assert code == 0
    about_redis = {"restore_failed", "recovery_retry", "redis_failed", "redis_unreachable"}
    lines = _lines(process)
    failures = [line for line in lines if line["event"] in about_redis | {"redis_tls_failed"}]
    assert failures, "the failure is logged"
    for line in failures:
        assert "tls: certificate verify failed" in str(line["error"]), line
        assert "unreachable" not in orjson.dumps(line).decode(), line
    assert not [line for line in lines if line["event"] == "redis_unreachable"]
