"""tests/faultproxy.py and the outage fixtures: cuts really cut, heals really heal, data stays."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from daemon.dev.stack import RedisServer, free_port
from daemon.tools.topics_admin import create_topics
from tests.conftest import unique_topics
from tests.faultproxy import FaultProxy, ProxiedBroker

# --- the proxy on its own, in front of an echo server ------------------------------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP echo server on a free loopback port, in a thread."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def proxy(echo_port: int) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", echo_port) as started:
        yield started


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=2.0)


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the peer has closed (EOF or reset) rather than sent data or stayed silent."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _echoes(sock: socket.socket, payload: bytes = b"ping") -> bool:
    sock.sendall(payload)
    return sock.recv(len(payload)) == payload


def test_bytes_are_forwarded_both_ways(proxy: FaultProxy) -> None:
    with _connect(proxy.port) as a, _connect(proxy.port) as b:
        assert _echoes(a, b"hello")
        big = bytes(range(256)) * 1024  # more than one chunk each way
        b.sendall(big)
        received = b""
        while len(received) < len(big):
            received += b.recv(65536)
        assert received == big
        assert proxy.open_connections == 2
    assert proxy.address == f"127.0.0.1:{proxy.port}"


def test_a_cut_closes_every_open_connection_and_new_ones_until_the_heal(
    proxy: FaultProxy,
) -> None:
    with _connect(proxy.port) as a, _connect(proxy.port) as b:
        assert _echoes(a)
        assert _echoes(b)
        proxy.cut()
        assert proxy.is_cut
        assert proxy.open_connections == 0  # closed by the time cut() returns
        assert _closed_by_peer(a)
        assert _closed_by_peer(b)
    with _connect(proxy.port) as refused:  # the port still accepts, then hangs up at once
        assert _closed_by_peer(refused)
    proxy.heal()
    assert not proxy.is_cut
    with _connect(proxy.port) as again:
        assert _echoes(again)


def test_a_connection_to_a_down_upstream_is_closed_at_once() -> None:
    with FaultProxy("127.0.0.1", free_port()) as proxy, _connect(proxy.port) as sock:
        assert _closed_by_peer(sock)


def test_start_and_close_are_idempotent_and_a_restart_keeps_the_port(echo_port: int) -> None:
    proxy = FaultProxy("127.0.0.1", echo_port)
    with pytest.raises(RuntimeError, match="after start"):
        _ = proxy.port
    with pytest.raises(RuntimeError, match="not running"):
        proxy.cut()
    proxy.close()  # never started: nothing to do
    port = proxy.start().port
    assert proxy.start().port == port
    proxy.close()
    proxy.close()
    with pytest.raises(ConnectionRefusedError):
        _connect(port)
    with proxy.start(), _connect(port) as sock:
        assert _echoes(sock)


# --- a Kafka broker behind the proxy -----------------------------------------------------------


async def _acked(producer: AIOKafkaProducer, topic: str, values: range) -> list[bytes]:
    sent = []
    for i in values:
        await producer.send_and_wait(topic, key=b"shop", value=b"%d" % i)
        sent.append(b"%d" % i)
    return sent


async def _read_all(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,  # Tansu answers JoinGroup after about half of this
        heartbeat_interval_ms=300,
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        async with asyncio.timeout(8):
            while len(values) < count:
                values.extend(await _poll(consumer, 200))
        values.extend(await _poll(consumer, 300))  # nothing more than expected is there
        return values
    finally:
        await consumer.stop()


async def _poll(consumer: AIOKafkaConsumer, timeout_ms: int) -> list[bytes]:
    batches = await consumer.getmany(timeout_ms=timeout_ms)
    return [record.value for records in batches.values() for record in records]


async def test_kafka_clients_reach_the_broker_only_through_the_proxy(
    proxied_broker: ProxiedBroker,
) -> None:
    topics = unique_topics()
    topic = topics.inquiries
    await create_topics(proxied_broker.bootstrap, topics, partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=proxied_broker.bootstrap, enable_idempotence=False
    )
    await producer.start()
    try:
        advertised = {(b.host, b.port) for b in producer.client.cluster.brokers()}
        assert advertised == {("127.0.0.1", proxied_broker.proxy.port)}
        assert proxied_broker.proxy.open_connections >= 1
        sent = await _acked(producer, topic, range(5))
    finally:
        await producer.stop()
    assert await _read_all(proxied_broker.bootstrap, topic, len(sent)) == sent


async def test_a_cut_fails_sends_and_after_the_heal_no_acknowledged_record_is_lost(
    proxied_broker: ProxiedBroker,
) -> None:
    topics = unique_topics()
    topic = topics.inquiries
    await create_topics(proxied_broker.bootstrap, topics, partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=proxied_broker.bootstrap,
        enable_idempotence=False,
        request_timeout_ms=1000,  # also how long a batch may wait for a broker
    )
    await producer.start()
    try:
        before = await _acked(producer, topic, range(5))
        proxied_broker.proxy.cut()
        started = time.monotonic()
        with pytest.raises(KafkaError):  # NodeNotReadyError: every reconnection is dropped
            await producer.send_and_wait(topic, key=b"shop", value=b"lost")
        assert time.monotonic() - started < 3
        proxied_broker.proxy.heal()
        after = await _acked(producer, topic, range(5, 10))  # the same producer recovers
    finally:
        await producer.stop()
    # no byte reached the broker while cut, so the unacknowledged record is not there either
    assert await _read_all(proxied_broker.bootstrap, topic, 10) == before + after


async def test_a_send_during_a_cut_shorter_than_the_request_timeout_is_acknowledged(
    proxied_broker: ProxiedBroker,
) -> None:
    """aiokafka retries a batch until `request_timeout_ms`: a short outage goes unnoticed."""
    topics = unique_topics()
    await create_topics(proxied_broker.bootstrap, topics, partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=proxied_broker.bootstrap,
        enable_idempotence=False,
        request_timeout_ms=5000,
    )
    await producer.start()
    try:
        await _acked(producer, topics.inquiries, range(1))
        proxied_broker.proxy.cut()
        sending = asyncio.ensure_future(_acked(producer, topics.inquiries, range(1, 2)))
        await asyncio.sleep(0.5)
        assert not sending.done()
        proxied_broker.proxy.heal()
        async with asyncio.timeout(3):
            assert await sending == [b"1"]
    finally:
        await producer.stop()


# --- a Redis that keeps its data ---------------------------------------------------------------


def test_durable_redis_keeps_its_data_across_a_stop_and_start(durable_redis: RedisServer) -> None:
    assert durable_redis.appendfsync == "always"
    port = durable_redis.port
    with redis.Redis.from_url(durable_redis.url) as client:
        client.set("session:1", "agent-7")
        durable_redis.stop()
        with pytest.raises(redis.ConnectionError):
            client.get("session:1")
        durable_redis.start()
        assert durable_redis.port == port
        assert client.get("session:1") == b"agent-7"  # the same client reconnects


def test_durable_redis_keeps_every_acknowledged_write_across_a_kill(
    durable_redis: RedisServer,
) -> None:
    """appendfsync always: a crash (SIGKILL, no clean shutdown) loses no acknowledged write."""
    with redis.Redis.from_url(durable_redis.url) as client:
        for i in range(200):
            client.rpush("outbox", i)
        durable_redis.kill()
        assert not durable_redis.running
        with pytest.raises(redis.ConnectionError):
            client.ping()
        durable_redis.start()
        assert client.lrange("outbox", 0, -1) == [b"%d" % i for i in range(200)]
