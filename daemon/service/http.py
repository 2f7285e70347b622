"""The daemon's HTTP stack: aiohttp's `web` server on `[http] listen`, with limits.

Why aiohttp: it is the asyncio HTTP server maintained by aio-libs, the family aiokafka comes
from, so it runs in the daemon's one event loop next to the consumer with no thread and no
second framework (an ASGI server would bring its own loop management, lifespan protocol and
signal handling, which the daemon owns already). It parses HTTP/1.1 properly (keep-alive,
pipelining, bodies, HEAD), routes with path parameters, and has the knobs a server exposed to
a network needs, all set here in `Limits`:

- a request line or header line longer than `max_line` / `max_field` bytes, or more than
  `max_headers` headers, is answered 400 and the connection closed;
- a body over `max_body` bytes is answered 413 (`client_max_size`; a declared
  Content-Length over it is refused before reading);
- a connection must send a whole request head within `idle_s` of opening, and its next one
  within `idle_s` of the last answer (aiohttp's keep-alive timer, which from 3.14.4 also runs
  before the first request): a client that sends half a request and stalls is dropped;
- a body must arrive within `body_s` (408 and closed otherwise); the unread rest of a
  refused body is drained for at most `linger_s` before the connection is closed;
- a handler whose client went away is cancelled (`handler_cancellation`);
- an answer must be taken within `write_s`: a client that pipelines requests and never
  reads has its connection aborted once its answer has waited that long on a full socket
  buffer (the buffered bytes freed; aiohttp itself stops reading a connection whose parsed
  requests queue up);
- at most `rate` requests a second are answered (`burst` at once), the probes in a bucket
  of their own: a request over the rate sleeps until its turn, and one whose turn is more
  than `queue_s` away is answered 429 (`Retry-After: 1`) and its connection closed;
- at most `bytes_rate` bytes a second of answers are sent (`bytes_burst` at once), paced
  the same way after the answer is ready (the probes' few bytes apart): what an answer
  costs the loop grows with its size, so a larger /metrics (more shops, more series) lowers
  the answers a second instead of raising the cost to routing;
- `close()` stops listening, gives requests in flight `shutdown_s` to finish, then closes
  every connection: well inside the daemon's 1.5 s per-client budget at SIGTERM.

Why pace rather than serve from a thread of its own (contract §6, "Watching never slows
routing"): /metrics is a snapshot (daemon.service.metrics), so a scrape renders nothing, yet
16 keep-alive clients asking as fast as they are answered still cost the loop most of a
core in aiohttp's parsing and writing alone — with the snapshot, routing latency p50 went
×2.9 at 1 shop and ×9.9 at 3,000 (BENCHMARKS.md, issue 23). A second thread and event loop
would run that same Python under the same GIL: the loop, each time it waits on a socket,
then waits up to the interpreter's 5 ms switch interval for the GIL back, several times an
event; and rendering per request in a thread was measured at 1.5 s p50 before. Pacing bounds
the cost whatever the clients do (~100 answers a second: a few percent of a core, p50
×1.1–1.3 at 3,000 shops), keeps one loop, and a scraper, a console or a probe never waits
more than `queue_s`.

No access log: the console's address may carry `?token=` (daemon.service.api), and a
request line is not worth a log line per scrape anyway. Malformed requests (the client's
fault, answered 400) are not logged either: aiohttp's error line would quote the offending
header, which may be an Authorization header.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware


@dataclass(frozen=True, slots=True)
class Limits:
    """What a client may send, and how slowly (module docstring)."""

    max_line: int = 8190  # bytes of the request line and of a header line
    max_field: int = 8190  # bytes of one header's value
    max_headers: int = 64
    max_body: int = 64 * 1024
    idle_s: float = 5.0  # a request head must arrive within this (first and next requests)
    body_s: float = 5.0  # a body must arrive within this once its head is in
    linger_s: float = 1.0  # the unread rest of a refused body is drained this long at most
    shutdown_s: float = 1.0  # requests in flight at `close()` get this long
    write_s: float = 10.0  # an answer must be taken by the client within this
    rate: float = 100.0  # requests answered per second (probes and the rest, each)
    burst: int = 20  # requests answered at once after a quiet spell
    bytes_rate: float = 64 * 2**20  # bytes of answers sent per second (but the probes')
    bytes_burst: float = 16 * 2**20  # bytes of answers sent at once after a quiet spell
    queue_s: float = 1.0  # a request waits this long at most for its turn, else 429


class _NoClientErrors(logging.Filter):
    """Drops aiohttp's log records about requests it could not parse."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, HttpProcessingError)


_SERVER_LOG = logging.getLogger("aiohttp.server")
_CLIENT_ERRORS = _NoClientErrors()


def is_loopback(request: web.BaseRequest) -> bool:
    """Whether the peer is this machine (127.0.0.0/8, ::1 or ::ffff:127.x)."""
    try:
        address = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def is_local(request: web.BaseRequest) -> bool:
    """Whether the peer is this machine: a loopback address, or the daemon's Unix socket
    (`control_socket`: only its owner can reach it)."""
    transport = request.transport
    if transport is not None and isinstance(transport.get_extra_info("sockname"), str | bytes):
        return True  # an AF_UNIX socket's name is its path
    return is_loopback(request)


def json_error(status: int, message: str, **fields: object) -> web.Response:
    """A JSON error answer: `{"error": message, **fields}`."""
    return web.json_response({"error": message, **fields}, status=status)


def _body_guard(limits: Limits) -> Middleware:
    """Read any body before the handler: 413 over `max_body`, 408 if it comes too slowly."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            declared = request.content_length
            if declared is not None and declared > limits.max_body:
                answer = json_error(413, f"a body may hold at most {limits.max_body} bytes")
                answer.force_close()  # the rest of that body is not read
                return answer
            try:
                async with asyncio.timeout(limits.body_s):
                    await request.read()  # 413 (HTTPRequestEntityTooLarge) past max_body
            except TimeoutError:
                answer = json_error(408, f"the body did not arrive within {limits.body_s:g} s")
                answer.force_close()
                return answer
        return await handler(request)

    return guard


class Pace:
    """A token bucket in virtual time: `burst` requests at once, then one every 1/`rate`
    s; a request whose turn is more than `queue_s` away is refused (None). A request may
    cost more than one (`turn(cost)`: bytes, say): its successor's turn is that much later."""

    def __init__(
        self,
        rate: float,
        burst: float,
        queue_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gap = 1 / rate
        self._span = (burst - 1) * self._gap  # a full bucket: `burst` turns at once
        self._queue_s = queue_s
        self._clock = clock
        self._next = -math.inf  # the turn of the next request

    def turn(self, cost: float = 1.0) -> float | None:
        """How long this request waits for its turn (0: none), or None: refused."""
        now = self._clock()
        slot = max(self._next, now - self._span)
        if slot - now > self._queue_s:
            return None
        self._next = slot + self._gap * cost
        return max(0.0, slot - now)


PROBES = frozenset({"/healthz", "/readyz"})  # paced apart: a flood elsewhere never fails them


LIMITED = ("rate", "write_timeout")  # what `on_limit` is told: a 429, an aborted answer


def _pacer(limits: Limits, on_limit: Callable[[str], None]) -> Middleware:
    """Answer at most `rate` requests a second (probes apart): a request waits for its turn
    without cost, or is answered 429 and its connection closed when the queue is full."""
    probes = Pace(limits.rate, limits.burst, limits.queue_s)
    others = Pace(limits.rate, limits.burst, limits.queue_s)
    volume = Pace(limits.bytes_rate, limits.bytes_burst, limits.queue_s)

    @web.middleware
    async def pacer(request: web.Request, handler: Handler) -> web.StreamResponse:
        probe = request.path in PROBES
        wait = (probes if probe else others).turn()
        if wait is None:
            return _too_many(on_limit, f"over {limits.rate:g} requests a second")
        if wait > 0:
            await asyncio.sleep(wait)
        answer = await handler(request)
        body = getattr(answer, "body", None)
        if probe or not isinstance(body, bytes):
            return answer
        wait = volume.turn(len(body))
        if wait is None:
            return _too_many(
                on_limit, f"over {limits.bytes_rate / 2**20:g} MiB of answers a second"
            )
        if wait > 0:
            await asyncio.sleep(wait)
        return answer

    return pacer


def _too_many(on_limit: Callable[[str], None], what: str) -> web.Response:
    """A 429 that closes its connection, for a request over a pace."""
    on_limit("rate")
    answer = json_error(429, f"{what}: ask again later")
    answer.headers["Retry-After"] = "1"
    answer.force_close()
    return answer


def _write_guard(limits: Limits, on_limit: Callable[[str], None]) -> Middleware:
    """Send the answer here, within `write_s`: a client that does not read it (a full
    socket buffer) has its connection aborted, and the answer's bytes are freed."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        answer = await handler(request)
        try:
            async with asyncio.timeout(limits.write_s):
                await answer.prepare(request)
                await answer.write_eof()
        except TimeoutError:
            on_limit("write_timeout")
            transport = request.transport
            if transport is not None:
                transport.abort()  # close() would wait for the buffer to drain
            raise asyncio.CancelledError from None  # the connection is gone: nothing to send
        return answer

    return guard


def _make_app(
    routes: Iterable[web.AbstractRouteDef],
    middlewares: Sequence[Middleware],
    limits: Limits,
    on_limit: Callable[[str], None],
) -> web.Application:
    """An application serving `routes` under `limits` (the write guard, the pacer and the
    body guard run first, in that order)."""
    app = web.Application(
        client_max_size=limits.max_body,
        middlewares=[
            _write_guard(limits, on_limit),
            _pacer(limits, on_limit),
            _body_guard(limits),
            *middlewares,
        ],
    )
    app.add_routes(list(routes))
    return app


class HttpServer:
    """Serves `routes` on host:port until `close()`, `middlewares` after the body guard;
    `on_limit` is told each request refused over the rate and each answer cut off (a
    name of LIMITED; see the module docstring)."""

    def __init__(
        self,
        routes: Iterable[web.AbstractRouteDef],
        host: str,
        port: int,
        *,
        middlewares: Sequence[Middleware] = (),
        limits: Limits = Limits(),
        on_limit: Callable[[str], None] = lambda limit: None,
        control_socket: Path | None = None,
    ) -> None:
        self._app = _make_app(routes, middlewares, limits, on_limit)
        self._host, self._port = host, port
        self.control_socket = control_socket  # also served there, if it can be (see start)
        self.control_error: str | None = None  # why it could not be
        self._socket_inode = 0
        self._limits = limits
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        assert self._runner is not None
        return int(self._runner.addresses[0][1])

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._runner.server.connections) if self._runner and self._runner.server else 0

    async def start(self) -> None:
        """Bind and start serving."""
        limits = self._limits
        runner = web.AppRunner(
            self._app,
            handle_signals=False,  # the daemon owns its signals (daemon.service.control_plane)
            access_log=None,
            keepalive_timeout=limits.idle_s,
            max_line_size=limits.max_line,
            max_field_size=limits.max_field,
            max_headers=limits.max_headers,
            lingering_time=limits.linger_s,
            handler_cancellation=True,
            shutdown_timeout=limits.shutdown_s,
        )
        _SERVER_LOG.addFilter(_CLIENT_ERRORS)  # once: a filter is kept as a set member
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host or None, self._port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.control_socket is not None:
            try:
                await self._serve_unix(runner, self.control_socket)
                self._socket_inode = self.control_socket.stat().st_ino
            except OSError as exc:
                self.control_error = str(exc)
                self.control_socket = None

    @staticmethod
    async def _serve_unix(runner: web.AppRunner, path: Path) -> None:
        """Serve on a Unix socket at `path` too (once, at start: its file calls are quick)."""
        _make_room(path)
        await web.UnixSite(runner, str(path)).start()

    async def close(self) -> None:
        """Stop listening, let requests in flight finish (`shutdown_s`), close (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            if self.control_socket is not None:
                _remove_if(self.control_socket, self._socket_inode)


def _make_room(path: Path) -> None:
    """A folder only this user can enter for the socket at `path`; a socket left there by a
    daemon that died is removed."""
    path.parent.mkdir(mode=0o700, exist_ok=True)
    folder = path.parent.stat()
    if folder.st_uid != os.getuid() or folder.st_mode & 0o077:
        raise PermissionError(f"{path.parent} is not this user's alone")
    path.unlink(missing_ok=True)


def _remove_if(path: Path, inode: int) -> None:
    """Remove the socket at `path` if it is still the one made (`inode`), not one a daemon
    started since with the same file made there."""
    with contextlib.suppress(OSError):
        if path.stat().st_ino == inode:
            path.unlink()
