"""The daemon's small HTTP server: /metrics, /healthz, /readyz, /shops/{id}/explain and
POST /-/reload.

Plain asyncio streams: five routes do not justify a web framework. One request per
connection, bodies ignored, answers closed after writing. `/-/reload` is accepted only from
loopback peers, since it changes what the daemon does.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote

Answer = tuple[int, str, bytes]
Handler = Callable[[], Awaitable[Answer]]
ShopHandler = Callable[[str], Awaitable[Answer]]
LOOPBACK = ("127.", "::1", "::ffff:127.")
REASONS = {
    200: "OK",
    202: "Accepted",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


@dataclass
class Routes:
    """What each path answers; `reload` is POST-only and loopback-only; `explain` gets the
    shop id of `/shops/{id}/explain`."""

    metrics: Handler
    healthz: Handler
    readyz: Handler
    reload: Handler
    explain: ShopHandler


class HttpServer:
    """Serves `Routes` on host:port until `close()`."""

    def __init__(self, routes: Routes, host: str, port: int) -> None:
        self._routes = routes
        self._host, self._port = host, port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start serving."""
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            while (line := await asyncio.wait_for(reader.readline(), timeout=5)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                del line
            status, ctype, body = await self._answer(request, writer)
        except (TimeoutError, ConnectionError):
            writer.close()
            return
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, request: bytes, writer: asyncio.StreamWriter) -> tuple[int, str, bytes]:
        parts = request.decode("latin-1").split()
        method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
        get = self._get_route(path)
        if get is not None:
            if method not in ("GET", "HEAD"):
                return 405, "text/plain", b"use GET\n"
            return await get()
        if path == "/-/reload":
            peer = writer.get_extra_info("peername")
            if method != "POST":
                return 405, "text/plain", b"use POST\n"
            if not peer or not str(peer[0]).startswith(LOOPBACK):
                return 403, "text/plain", b"reload is accepted from loopback only\n"
            return await self._routes.reload()
        return 404, "text/plain", b"not found\n"

    def _get_route(self, path: str) -> Handler | None:
        """The handler of a GET path, or None."""
        routes = self._routes
        fixed = {"/metrics": routes.metrics, "/healthz": routes.healthz, "/readyz": routes.readyz}
        if path in fixed:
            return fixed[path]
        prefix, suffix = "/shops/", "/explain"
        raw = path[len(prefix) : -len(suffix)]  # percent-encoded: a "/" in it is no shop id
        if path.startswith(prefix) and path.endswith(suffix) and raw and "/" not in raw:
            return functools.partial(routes.explain, unquote(raw))
        return None
