"""The daemon's side of its control plane: what its HTTP routes answer, its signals, and
reloading.

`routes(service)` answers /metrics, /healthz, /readyz and POST /-/reload (loopback peers
only), with the JSON API and the console of daemon.service.api (daemon/service/http.py serves
them; daemon/tools/control.py is the `fenliu reload` client). `install_signals` has SIGTERM
and SIGINT ask the service to stop, SIGHUP to reload; the handlers only set flags.
A reload — SIGHUP or POST /-/reload — is queued by `Service.request_reload` as a future and
applied by the loop between batches with `apply_reload`: every file is read again, only shop
files are applied, and changes to `[kafka]`, `[redis]` or `[http]` are reported as needing a
restart. A configuration that does not validate changes nothing; its futures fail with
`ReloadRefused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from daemon.config import ConfigError, FenliuConfig, load_config
from daemon.core.engine import Engine
from daemon.service.api import api_routes
from daemon.service.checkpoint import Checkpoint
from daemon.service.http import is_loopback
from daemon.service.metrics import Metrics
from daemon.service.views import Views
from topics.events import OutputEvent

RELOAD_WAIT_S = 10  # POST /-/reload: how long to wait for the loop to apply it


class ReloadRefused(ValueError):
    """A reload whose configuration did not validate."""


class Served(Protocol):
    """What the routes read of the running service (`daemon.service.run.Service` is one)."""

    @property
    def metrics(self) -> Metrics: ...
    @property
    def checkpoint(self) -> Checkpoint: ...
    @property
    def ready(self) -> bool: ...
    @property
    def views(self) -> Views: ...
    @property
    def config(self) -> FenliuConfig: ...
    def request_reload(self) -> asyncio.Future[str]: ...


def apply_reload(
    config: FenliuConfig,
    engine: Engine,
    clock: Callable[[], int],
    waiting: list[asyncio.Future[str]],
    *,
    metrics: Metrics,
    log: Any,
) -> tuple[FenliuConfig, list[OutputEvent]]:
    """Read `config`'s files again and apply its shops to `engine`, settling `waiting`;
    the configuration now in force and the engine's outputs."""
    started = time.perf_counter()
    try:
        new = load_config(config.config_path)
    except ConfigError as exc:
        problems = [str(p) for p in exc.problems]
        metrics.reloads.labels("failed").inc()
        log.error("reload_failed", problems=problems)
        _settle(waiting, "reload refused; nothing changed:\n" + "\n".join(problems), ok=False)
        return config, []
    changed = [s for s, c in new.shop_configs.items() if engine.configs.get(s) != c]
    changed += [s for s in engine.configs if s not in new.shop_configs]
    outputs = engine.reconfigure(new.shop_configs, clock())
    restart = [k for k in ("kafka", "redis", "http") if getattr(new, k) != getattr(config, k)]
    config = config.model_copy(update={"shop_configs": new.shop_configs})
    metrics.reloads.labels("ok").inc()
    log.info(
        "reload_ok",
        shops=len(new.shop_configs),
        changed=len(changed),
        needs_restart=restart,
        seconds=round(time.perf_counter() - started, 3),
    )
    note = f" ({', '.join(restart)} changes need a restart)" if restart else ""
    _settle(waiting, f"reloaded {len(new.shop_configs)} shop(s){note}", ok=True)
    return config, outputs


def _settle(futures: list[asyncio.Future[str]], text: str, *, ok: bool) -> None:
    for future in futures:
        if not future.done():
            if ok:
                future.set_result(text)
            else:
                future.set_exception(ReloadRefused(text))
        with contextlib.suppress(asyncio.CancelledError, ReloadRefused):
            if future.done():
                future.exception()  # mark retrieved: a SIGHUP reload has no listener


def install_signals(stop: Callable[[], None], reload: Callable[[], object]) -> None:
    """SIGTERM and SIGINT call `stop`, SIGHUP calls `reload` (each only sets a flag)."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop)
    loop.add_signal_handler(signal.SIGINT, stop)
    loop.add_signal_handler(signal.SIGHUP, lambda: reload() and None)


def remove_signals() -> None:
    """Undo `install_signals`."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.remove_signal_handler(sig)


def routes(service: Served) -> list[web.RouteDef]:
    """The HTTP routes of a running `service` (each reads its state when asked)."""

    async def metrics(request: web.Request) -> web.StreamResponse:
        body = service.metrics.latest()  # the loop's snapshot: nothing is read here
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    async def healthz(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.StreamResponse:
        if service.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def reload(request: web.Request) -> web.StreamResponse:
        if not is_loopback(request):
            return web.Response(status=403, text="reload is accepted from loopback only\n")
        try:
            text = await asyncio.wait_for(service.request_reload(), timeout=RELOAD_WAIT_S)
        except ReloadRefused as exc:
            return web.Response(status=422, text=f"{exc}\n")
        except TimeoutError:
            return web.Response(status=503, text="reload not applied within 10 s\n")
        return web.Response(text=f"{text}\n")

    return [
        web.get("/metrics", metrics),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.post("/-/reload", reload),
        *api_routes(service),
    ]
