"""A TCP fault proxy for outage tests: forward bytes, then cut every connection at will.

`FaultProxy` listens on a loopback port and forwards each connection to an upstream address.
`cut()` closes every open connection at once (both sides) and, until `heal()`, accepts new
connections only to close them straight away, so a client sees its broker vanish and every
reconnection fail. The listening port stays bound throughout, so nothing else can take it.

The proxy runs its own event loop in its own thread: tests drive the daemon as a subprocess
or from sync code, and the proxy must not depend on (or block) the test's loop. Every public
method is thread-safe and returns once the proxy's loop has done the work.

`ProxiedBroker` puts a Tansu `Broker` behind a proxy: the broker advertises the proxy's port,
so a Kafka client bootstrapped at `bootstrap` reaches the broker only through the proxy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from daemon.dev.stack import HOST, Broker, free_port

__all__ = ["FaultProxy", "ProxiedBroker"]

T = TypeVar("T")
_CHUNK = 65536
_Link = tuple[asyncio.WriteTransport, asyncio.WriteTransport]  # (client side, upstream side)


class FaultProxy:
    """Forwards TCP connections from ``127.0.0.1:port`` to the upstream; `cut()` / `heal()`."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        port: int = 0,
        timeout: float = 5.0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._requested_port = port  # 0: the OS picks one at start()
        self._timeout = timeout  # for each call into the proxy's loop
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()  # one per accepted connection
        self._cut = False
        self.accepted = 0  # connections accepted so far, refused ones included

    # --- what tests use ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The listening port on 127.0.0.1 (known once started)."""
        if self._port is None:
            raise RuntimeError("FaultProxy.port is known only after start()")
        return self._port

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"``, the address clients connect to."""
        return f"{HOST}:{self.port}"

    @property
    def is_cut(self) -> bool:
        """Whether connections are being dropped (between `cut()` and `heal()`)."""
        return self._cut

    @property
    def open_connections(self) -> int:
        """How many connections are being forwarded right now."""
        return len(self._links)

    def start(self) -> Self:
        """Bind the port and start forwarding; a no-op if already started."""
        if self._thread is not None:
            return self
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=asyncio.run,
            args=(self._serve(ready),),
            name=f"faultproxy->{self.upstream[1]}",
            daemon=True,
        )
        self._thread.start()
        self._port = self._requested_port = ready.result(self._timeout)  # kept by a restart
        return self

    def cut(self) -> None:
        """Close every open connection at once and drop new ones until `heal()`."""
        self._call(self._cut_now())

    def heal(self) -> None:
        """Forward new connections again (the ones `cut()` closed stay closed)."""
        self._call(self._heal_now())

    def close(self) -> None:
        """Close every connection and the port, and end the thread; idempotent.

        `start()` after `close()` listens again on the same port.
        """
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        self._thread = None
        loop.call_soon_threadsafe(stop.set)
        thread.join(self._timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"{HOST}:{self._port}" if self._port is not None else "not started"
        state = "cut" if self._cut else f"{len(self._links)} open"
        return f"<FaultProxy {where} -> {self.upstream[0]}:{self.upstream[1]} {state}>"

    # --- the proxy's own loop ---------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        if self._thread is None or loop is None:
            coroutine.close()
            raise RuntimeError("the FaultProxy is not running: start() it first")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("FaultProxy methods are for other threads than its own")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(self._timeout)

    async def _serve(self, ready: concurrent.futures.Future[int]) -> None:
        try:
            server = await asyncio.start_server(self._accept, HOST, self._requested_port)
        except OSError as exc:
            ready.set_exception(exc)
            return
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        ready.set_result(server.sockets[0].getsockname()[1])
        try:
            await self._stop.wait()
        finally:
            server.close()
            self._drop_all()
            # let every handler end on its own: cancelled ones make 3.11's streams log errors
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=self._timeout)

    async def _cut_now(self) -> None:
        self._cut = True
        self._drop_all()
        await asyncio.sleep(0)  # let the aborted transports close their sockets

    async def _heal_now(self) -> None:
        self._cut = False

    def _drop_all(self) -> None:
        links, self._links = self._links, set()
        for link in links:
            for transport in link:
                transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        transports = [writer.transport]
        try:
            if not self._cut:  # while cut, a new connection is closed as soon as accepted
                await self._forward(reader, writer, transports)
        finally:
            for transport in transports:
                transport.abort()
            self._handlers.discard(task)

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        transports: list[asyncio.WriteTransport],
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            return  # upstream down: the client sees its connection close
        transports.append(up_writer.transport)
        if self._cut:  # cut while connecting upstream
            return
        link = (writer.transport, up_writer.transport)
        self._links.add(link)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            self._links.discard(link)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy bytes until either side ends, then close the sink (which ends the other pump)."""
    try:
        while data := await source.read(_CHUNK):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()


@dataclass(frozen=True, slots=True)
class ProxiedBroker:
    """A Tansu broker reachable only through a fault proxy (its metadata advertises the proxy)."""

    broker: Broker
    proxy: FaultProxy

    @property
    def bootstrap(self) -> str:
        """The proxy's address, for every Kafka client under test."""
        return self.proxy.address

    @classmethod
    def start(cls, **broker_options: Any) -> ProxiedBroker:
        """Start a proxy, then a broker behind it advertising the proxy's port."""
        proxy = FaultProxy(HOST, free_port()).start()
        try:
            broker = Broker(proxy.upstream[1], advertised_port=proxy.port, **broker_options)
            broker.start()
        except BaseException:
            proxy.close()
            raise
        return cls(broker, proxy)

    def stop(self) -> None:
        """Close the proxy and stop the broker; idempotent."""
        self.proxy.close()
        self.broker.stop()
