"""The daemon's side of its control plane: what its HTTP routes answer, its signals, and
reloading.

`routes(service)` answers /metrics, /healthz, /readyz, /shops/{id}/explain and
POST /-/reload (daemon/service/http.py serves them; daemon/tools/control.py is the
`fenliu reload` client). `install_signals` has SIGTERM and SIGINT ask the service to stop,
SIGHUP to reload; the handlers only set flags.
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

import orjson

from daemon.config import ConfigError, FenliuConfig, load_config
from daemon.core.engine import Engine
from daemon.core.explain import explain_shop
from daemon.service.checkpoint import Checkpoint
from daemon.service.http import Routes
from daemon.service.metrics import Metrics
from topics.events import OutputEvent

RELOAD_WAIT_S = 10  # POST /-/reload: how long to wait for the loop to apply it


class ReloadRefused(ValueError):
    """A reload whose configuration did not validate."""


class Served(Protocol):
    """What the routes read of the running service (`daemon.service.run.Service` is one)."""

    @property
    def metrics(self) -> Metrics: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def checkpoint(self) -> Checkpoint: ...
    @property
    def clock(self) -> Callable[[], int]: ...
    @property
    def ready(self) -> bool: ...
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


def routes(service: Served) -> Routes:
    """The HTTP routes of a running `service` (each reads its state when asked)."""

    async def metrics() -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4", service.metrics.render()

    async def healthz() -> tuple[int, str, bytes]:
        return 200, "text/plain", b"ok\n"

    async def readyz() -> tuple[int, str, bytes]:
        if service.ready:
            return 200, "text/plain", b"ready\n"
        return 503, "text/plain", b"not ready\n"

    async def reload() -> tuple[int, str, bytes]:
        try:
            text = await asyncio.wait_for(service.request_reload(), timeout=RELOAD_WAIT_S)
        except ReloadRefused as exc:
            return 422, "text/plain", f"{exc}\n".encode()
        except TimeoutError:
            return 503, "text/plain", b"reload not applied within 10 s\n"
        return 200, "text/plain", f"{text}\n".encode()

    async def explain(shop_id: str) -> tuple[int, str, bytes]:
        # This instance's state only: with several instances a shop lives on the one
        # owning its partition; "partition" is null where this one holds none of it.
        shop = service.engine.shops.get(shop_id)
        if shop is None:
            return 404, "text/plain", f"shop {shop_id!r} is not configured\n".encode()
        data = explain_shop(shop, max(service.clock(), shop.now))
        data["partition"] = service.checkpoint.partition_of.get(shop_id)
        return 200, "application/json", orjson.dumps(data)

    return Routes(metrics=metrics, healthz=healthz, readyz=readyz, reload=reload, explain=explain)
