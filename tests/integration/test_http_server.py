"""The daemon's HTTP stack (daemon/service/http.py) on a real socket: its routes, and the
limits on header size, body size and slow clients, and its shutdown.

The service behind it is a real `Service` that was never started (its routes read its state
when asked); every request goes through a real TCP connection to aiohttp."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.config import FenliuConfig, KafkaConfig, RedisConfig
from daemon.service.control_plane import routes
from daemon.service.http import HttpServer, Limits
from daemon.service.run import Service

LIMITS = Limits(max_line=1024, max_field=1024, max_body=1024, idle_s=0.5, body_s=0.5)


def _service() -> Service:
    config = FenliuConfig(
        kafka=KafkaConfig(bootstrap_servers="127.0.0.1:9092"),
        redis=RedisConfig(url="redis://127.0.0.1:6379/0"),
        config_path=Path("fenliu.toml"),
        shop_configs={},
        shop_files={},
    )
    return Service(config, install_signals=False)


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    http = HttpServer(routes(_service()), "127.0.0.1", 0, limits=LIMITS)
    await http.start()
    try:
        yield http
    finally:
        await http.close()


async def _exchange(port: int, raw: bytes, *, read_for: float = 5.0) -> bytes:
    """Send `raw`, then read until the server closes (or `read_for` seconds pass)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    try:
        async with asyncio.timeout(read_for):
            return await reader.read()
    finally:
        writer.close()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


async def test_probes_answer_and_the_wrong_method_is_405(server: HttpServer) -> None:
    close = b"Host: x\r\nConnection: close\r\n\r\n"
    answer = await _exchange(server.port, b"GET /healthz HTTP/1.1\r\n" + close)
    assert _status(answer) == 200 and answer.endswith(b"ok\n")
    assert _status(await _exchange(server.port, b"GET /readyz HTTP/1.1\r\n" + close)) == 503
    metrics = await _exchange(server.port, b"GET /metrics HTTP/1.1\r\n" + close)
    assert _status(metrics) == 200 and b"fenliu_reloads_total" in metrics
    assert _status(await _exchange(server.port, b"POST /healthz HTTP/1.1\r\n" + close)) == 405
    assert _status(await _exchange(server.port, b"GET /-/reload HTTP/1.1\r\n" + close)) == 405
    assert _status(await _exchange(server.port, b"GET /nope HTTP/1.1\r\n" + close)) == 404


async def test_keep_alive_serves_several_requests_on_one_connection(server: HttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for _ in range(3):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert await reader.readexactly(3) == b"ok\n"
    finally:
        writer.close()


async def test_an_oversized_header_is_refused_and_the_connection_closed(
    server: HttpServer,
) -> None:
    big = b"X-Big: " + b"a" * 4096 + b"\r\n"
    answer = await _exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    assert 400 <= _status(answer) < 500
    long_line = b"GET /" + b"a" * 4096 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert 400 <= _status(await _exchange(server.port, long_line)) < 500


async def test_an_oversized_body_is_413(server: HttpServer) -> None:
    body = b"x" * 4096
    head = f"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    assert _status(await _exchange(server.port, head.encode() + body)) == 413
    chunked = (
        b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"400\r\n" + b"y" * 1024 + b"\r\n" for _ in range(4))
        + b"0\r\n\r\n"
    )
    assert _status(await _exchange(server.port, chunked)) == 413


async def test_a_client_that_stalls_mid_head_is_dropped(server: HttpServer) -> None:
    """Half a request head, then nothing: the server closes the connection once `idle_s`
    has passed, without answering (the 5 s read limit is only the test's own guard)."""
    started = time.monotonic()
    answer = await _exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half:")
    assert answer == b""
    assert time.monotonic() - started >= LIMITS.idle_s


async def test_a_silent_connection_is_dropped(server: HttpServer) -> None:
    assert await _exchange(server.port, b"") == b""


async def test_a_client_that_stalls_mid_body_gets_408_and_is_closed(server: HttpServer) -> None:
    head = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
    answer = await _exchange(server.port, head)
    assert _status(answer) == 408


async def test_reload_is_refused_to_a_peer_that_is_not_loopback() -> None:
    """The only non-loopback address a test can reach is one of this machine's own: bind
    to all addresses and connect through the outward one, if the machine has one."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            outward = probe.getsockname()[0]
        except OSError:
            pytest.skip("no outward IPv4 address on this machine")
    if outward.startswith("127."):
        pytest.skip("no outward IPv4 address on this machine")
    http = HttpServer(routes(_service()), "0.0.0.0", 0, limits=LIMITS)
    await http.start()
    try:
        reader, writer = await asyncio.open_connection(outward, http.port)
        writer.write(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        assert _status(answer) == 403
    finally:
        await http.close()


async def test_close_finishes_a_request_in_flight_then_stops_listening() -> None:
    """A reload waiting for the loop (none runs here) is cut off after `shutdown_s`, and
    `close()` returns; afterwards nothing listens on the port."""
    limits = Limits(shutdown_s=0.3)
    http = HttpServer(routes(_service()), "127.0.0.1", 0, limits=limits)
    await http.start()
    port = http.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /-/reload HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.1)  # the handler is waiting for the reload
    await asyncio.wait_for(http.close(), 5)
    assert await asyncio.wait_for(reader.read(), 5) is not None
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    await http.close()  # idempotent
