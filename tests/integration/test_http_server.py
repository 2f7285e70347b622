"""The daemon's HTTP stack (daemon/service/http.py) on a real socket: its routes, and the
limits on header size, body size, slow clients, clients that do not read and request
rates, and its shutdown.

The service behind it is a real `Service` that was never started (its routes read its state
when asked); every request goes through a real TCP connection to aiohttp."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from daemon.config import FenliuConfig, KafkaConfig, RedisConfig, control_socket, load_config
from daemon.service import control_plane
from daemon.service.control_plane import routes
from daemon.service.http import HttpServer, Limits, Pace
from daemon.service.run import Service
from daemon.tools.control import over_socket

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


def _outward_ipv4() -> str:
    """This machine's outward IPv4 address (a skip when it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            return str(probe.getsockname()[0])
        except OSError:
            pytest.skip("no outward IPv4 address on this machine")


async def test_reload_is_refused_to_a_peer_that_is_not_loopback() -> None:
    """The only non-loopback address a test can reach is one of this machine's own: bind
    to all addresses and connect through the outward one, if the machine has one."""

    outward = _outward_ipv4()
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


async def _until(check: Callable[[], bool], within: float = 20.0) -> bool:
    """Whether `check` holds within `within` seconds (looked at every 50 ms)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_a_client_that_pipelines_and_never_reads_is_cut_off() -> None:
    """Requests for a large answer, pipelined, never read: once an answer has waited
    `write_s` for the client's full socket buffer, the connection is aborted (its buffered
    answer freed), and the server keeps answering everyone else."""
    big = b"x" * (4 << 20)

    async def large(request: web.Request) -> web.StreamResponse:
        return web.Response(body=big)

    limits, limited = Limits(write_s=0.3), list[str]()
    http = HttpServer([web.get("/large", large), *routes(_service())], "127.0.0.1", 0,
                      limits=limits, on_limit=limited.append)  # fmt: skip
    await http.start()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", http.port))
    try:
        sock.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
        assert await _until(lambda: http.connections == 1), "the connection was not opened"
        assert await _until(lambda: http.connections == 0), "a client that never reads is held"
        assert limited == ["write_timeout"]
        assert _status(await _exchange(http.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                       b"Connection: close\r\n\r\n")) == 200  # fmt: skip
    finally:
        sock.close()
        await http.close()


async def test_a_reading_client_gets_a_large_answer_whole() -> None:
    """The write guard sends the answer itself: a client that reads gets every byte."""
    big = b"y" * (4 << 20)

    async def large(request: web.Request) -> web.StreamResponse:
        return web.Response(body=big)

    http = HttpServer([web.get("/large", large)], "127.0.0.1", 0, limits=Limits(write_s=5))
    await http.start()
    try:
        answer = await _exchange(http.port, b"GET /large HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n", read_for=20)  # fmt: skip
        assert _status(answer) == 200 and answer.endswith(big)
    finally:
        await http.close()


def test_the_pace_lets_a_burst_through_then_one_request_per_gap() -> None:
    now = [100.0]
    pace = Pace(rate=10, burst=3, queue_s=0.25, clock=lambda: now[0])
    assert [pace.turn() for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert pace.turn() == pytest.approx(0.1)
    assert pace.turn() == pytest.approx(0.2)
    assert pace.turn() is None  # 0.3 s away: over queue_s, refused (and not queued)
    now[0] += 0.2
    assert pace.turn() == pytest.approx(0.1)  # the refused one took no turn
    now[0] += 100  # a quiet spell fills the bucket again, no more
    assert [pace.turn() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert pace.turn() == pytest.approx(0.1)


async def test_over_the_rate_is_429_and_closed_while_probes_still_answer() -> None:
    limits = Limits(rate=0.01, burst=1, queue_s=0.1)  # one request, then one per 100 s
    service, limited = _service(), list[str]()
    http = HttpServer(routes(service), "127.0.0.1", 0, limits=limits, on_limit=limited.append)
    await http.start()
    close = b"Host: x\r\nConnection: close\r\n\r\n"
    try:
        assert _status(await _exchange(http.port, b"GET /metrics HTTP/1.1\r\n" + close)) == 200
        reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 3)  # keep-alive, pipelined
        answer = await asyncio.wait_for(reader.read(), 10)  # read() ends: the server closed
        writer.close()
        assert _status(answer) == 429 and b"Retry-After: 1\r\n" in answer
        assert answer.count(b"HTTP/1.1 ") == 1, "the connection is closed after the 429"
        assert limited == ["rate"]
        assert _status(await _exchange(http.port, b"GET /healthz HTTP/1.1\r\n" + close)) == 200
    finally:
        await http.close()


def test_a_costly_request_puts_the_next_turn_further_off() -> None:
    now = [100.0]
    pace = Pace(rate=1000, burst=1000, queue_s=0.25, clock=lambda: now[0])  # bytes, say
    assert pace.turn(1000) == 0.0  # a full bucket's worth at once
    assert pace.turn(100) == pytest.approx(0.001)  # then a byte a ms: this one's turn ...
    assert pace.turn(1) == pytest.approx(0.101)  # ... puts the next 100 ms further off
    assert pace.turn(200) == pytest.approx(0.102)
    assert pace.turn(1) is None  # 0.302 s away: over queue_s, refused


async def test_answers_over_the_byte_rate_are_429_while_probes_still_answer() -> None:
    """Bytes are paced as well as requests: with room for about one /metrics answer a
    second, three asked at once get one answer; the probes are not counted."""
    service, limited = _service(), list[str]()
    size = len(service.metrics.latest())
    limits = Limits(bytes_rate=size, bytes_burst=1, queue_s=0.1)
    http = HttpServer(routes(service), "127.0.0.1", 0, limits=limits, on_limit=limited.append)
    await http.start()
    close = b"Host: x\r\nConnection: close\r\n\r\n"
    try:
        answers = [await _exchange(http.port, b"GET /metrics HTTP/1.1\r\n" + close)
                   for _ in range(3)]  # fmt: skip
        assert [_status(a) for a in answers].count(200) == 1
        refused = next(a for a in answers if _status(a) == 429)
        assert b"MiB of answers a second" in refused and b"Retry-After: 1\r\n" in refused
        assert limited == ["rate", "rate"]
        for _ in range(5):
            assert _status(await _exchange(http.port, b"GET /healthz HTTP/1.1\r\n" + close)) == 200
    finally:
        await http.close()


async def test_metrics_answers_the_snapshot_without_building_one(server: HttpServer) -> None:
    """/metrics reads the latest snapshot: requests between two builds build nothing and
    get the same bytes (but for the two gauges read live, readiness and the age)."""
    service = _service()
    http = HttpServer(routes(service), "127.0.0.1", 0, limits=LIMITS)
    await http.start()
    close = b"Host: x\r\nConnection: close\r\n\r\n"
    try:
        builds = service.metrics.builds
        bodies = [await _exchange(http.port, b"GET /metrics HTTP/1.1\r\n" + close)
                  for _ in range(3)]  # fmt: skip
        assert service.metrics.builds == builds
        service.metrics.outputs.labels("Assignment").inc()  # not in a snapshot until built
        bodies.append(await _exchange(http.port, b"GET /metrics HTTP/1.1\r\n" + close))
        cut = [b.split(b"\r\n\r\n", 1)[1].split(b"# HELP fenliu_ready")[0] for b in bodies]
        assert len(set(cut)) == 1 and b"fenliu_outputs_total{" not in cut[0]
        service.metrics.build()
        after = await _exchange(http.port, b"GET /metrics HTTP/1.1\r\n" + close)
        assert b'fenliu_outputs_total{type="Assignment"} 1.0' in after
    finally:
        await http.close()


async def test_healthz_answers_while_a_reload_reads_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload's files are read off the loop (contract §5, Reload): with the read held on
    an Event the test controls, the service's reload steps return and /healthz answers;
    released, the reload is applied by a later step and POST /-/reload hears how it went."""
    (tmp_path / "shops").mkdir()
    shop = 'id = "s"\n[[agents]]\nid = "a1"\n[[groups]]\nname = "g"\nagents = ["a1"]\n'
    (tmp_path / "shops" / "s.toml").write_text(shop)
    (tmp_path / "fenliu.toml").write_text(
        '[kafka]\nbootstrap_servers = "127.0.0.1:9092"\n[redis]\nurl = "redis://127.0.0.1:6379/0"\n'
    )
    release, reading = threading.Event(), threading.Event()

    def held_load(path: Path) -> FenliuConfig:
        reading.set()
        assert release.wait(timeout=30)
        return load_config(path)

    monkeypatch.setattr(control_plane, "load_config", held_load)
    service = _service()
    service.config = service.config.model_copy(update={"config_path": tmp_path / "fenliu.toml"})
    http = HttpServer(routes(service), "127.0.0.1", 0, limits=LIMITS)
    await http.start()
    close = b"Host: x\r\nConnection: close\r\n\r\n"
    try:
        asked = asyncio.ensure_future(
            _exchange(http.port, b"POST /-/reload HTTP/1.1\r\n" + close, read_for=20)
        )
        assert await _until(lambda: service.reloads.busy)  # the POST asked for it
        assert service._reload() == []  # between two batches: the read starts, in a thread
        assert await asyncio.to_thread(reading.wait, 30)
        for _ in range(3):
            answer = await _exchange(http.port, b"GET /healthz HTTP/1.1\r\n" + close)
            assert _status(answer) == 200
            assert service._reload() == [] and not asked.done()
        release.set()
        while not asked.done():
            service._reload()
            await asyncio.sleep(0.01)
        assert _status(answer := await asked) == 200 and b"reloaded 1 shop(s)" in answer
        assert set(service.engine.shops) == {"s"}
    finally:
        release.set()
        await http.close()


async def test_reload_over_the_control_socket_is_local_whatever_the_listen_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon listening on one of this machine's non-loopback addresses refuses a reload
    over TCP even from this machine (403), but `fenliu reload` reaches it on its Unix
    socket (daemon.config.control_socket), which only its user can enter."""
    outward = _outward_ipv4()
    monkeypatch.setattr(control_plane, "load_config", lambda path: service.config)
    service = _service()
    path = control_socket(tmp_path / "fenliu.toml")
    http = HttpServer(routes(service), outward, 0, limits=LIMITS, control_socket=path)
    await http.start()
    try:
        assert http.control_error is None and path.is_socket()
        reader, writer = await asyncio.open_connection(outward, http.port)
        writer.write(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _status(await reader.read()) == 403
        writer.close()
        asked = asyncio.ensure_future(asyncio.to_thread(over_socket, path))
        while not asked.done():
            service._reload()  # what the loop does between batches
            await asyncio.sleep(0.01)
        assert await asked == (200, "reloaded 0 shop(s)\n")
    finally:
        await http.close()
    assert not path.exists()
    assert over_socket(path) is None  # nobody there: `fenliu reload` asks the listen address
