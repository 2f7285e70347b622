"""The daemon's side of its control plane: what its HTTP routes answer, its signals, and
reloading.

`routes(service)` answers /metrics, /healthz, /readyz and POST /-/reload (from this machine
only: loopback peers, or the Unix socket `fenliu reload` finds the daemon on), with the
JSON API and the console of daemon.service.api (daemon/service/http.py serves them;
daemon/tools/control.py is the `fenliu reload` client). `install_signals` has SIGTERM and
SIGINT ask the service to stop, SIGHUP to reload; the handlers only set flags.
A reload — SIGHUP or POST /-/reload — is queued by `Service.request_reload` as a future and
moved on by the loop between batches with `Reloads.step`: every file is read again off the
loop, only shop files are applied, and changes to `[kafka]`, `[redis]` or `[http]` are
reported as needing a restart. A configuration that does not validate changes nothing; its
futures fail with `ReloadRefused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiohttp import web

from daemon.config import ConfigError, FenliuConfig, load_config
from daemon.core import plan
from daemon.core.engine import Engine
from daemon.service.api import api_routes
from daemon.service.checkpoint import Checkpoint
from daemon.service.http import is_local
from daemon.service.metrics import Metrics
from daemon.service.views import Views
from topics.events import OutputEvent

RELOAD_WAIT_S = 30  # POST /-/reload: how long to wait for it to be read and applied


class ReloadRefused(ValueError):
    """A reload whose configuration did not validate."""


@dataclass(frozen=True)
class Report:
    """How a reload went: a line, and per changed shop what changed and what happened at once
    to its buyers (daemon.core.plan; for a dry run, what would)."""

    message: str
    shops: list[dict[str, Any]] = field(default_factory=list)
    applied: bool = True

    def text(self) -> str:
        """The report as a person reads it: the line, then the shops that changed (a dry run
        says so when none would)."""
        if not self.shops and self.applied:
            return f"{self.message}\n"
        return f"{self.message}\n{plan.render(self.shops, applied=self.applied)}"

    def json(self) -> dict[str, Any]:
        """The report as `fenliu reload --json` prints it (contract §5)."""
        return {"message": self.message, "applied": self.applied, "shops": self.shops}


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
    def request_reload(self, *, dry_run: bool = False) -> asyncio.Future[Report]: ...


APPLY_BUDGET_S = 0.01  # a reload reconfigures shops about this long between two batches
FIRST_SLICE = 50  # shops in its first slice; the next are sized on the time they took
MIN_SLICE = 10  # (each slice also compares every shop's configuration: a few ms at 3,000)


@dataclass
class _Applying:
    """A validated configuration being applied, a slice of its changed shops at a time."""

    new: FenliuConfig
    waiting: list[asyncio.Future[Report]]
    todo: list[str]  # shops whose configuration changes, in the new file order
    changed: int
    reshaped: bool  # shops were added or removed
    started: float
    slice: int = FIRST_SLICE
    plans: list[plan.ShopPlan] = field(default_factory=list)  # of the slices applied so far


@dataclass
class Applied:
    """What one step of a reload did between two batches."""

    outputs: list[OutputEvent] = field(default_factory=list)
    config: FenliuConfig | None = None  # set when the reload is complete: now in force
    reshaped: bool = False  # with `config`: shops were added or removed


class Reloads:
    """Reloads asked for, read and validated off the loop, applied between batches.

    `request` queues a reload; `step`, called by the loop between two batches, moves them on
    without blocking it: the files are read and validated by a worker thread
    (`asyncio.to_thread`), and a configuration that validated is applied to the engine about
    APPLY_BUDGET_S of changed shops per step, each shop whole (a shop's settings never mix
    two files). A reload asked for while the files are read waits for the next read, so it
    sees every edit made before it was asked. A configuration that does not validate
    changes nothing at all.
    """

    def __init__(
        self, *, metrics: Metrics, log: Any, keep: Callable[[], None] = lambda: None
    ) -> None:
        self._metrics = metrics
        self._log = log
        self._keep = keep  # freezes what a read or a slice made (daemon.service.heap)
        self._asked: list[tuple[asyncio.Future[Report], bool]] = []  # and whether a dry run
        self._reading: asyncio.Task[FenliuConfig] | None = None
        self._read_for: list[tuple[asyncio.Future[Report], bool]] = []
        self._read_started = 0.0
        self._applying: _Applying | None = None
        self._dry_runs: set[asyncio.Task[None]] = set()  # worked out in threads

    @property
    def busy(self) -> bool:
        """A reload is asked for or under way (the loop should not sleep long)."""
        return bool(self._asked) or self._reading is not None or self._applying is not None

    @property
    def applying(self) -> bool:
        """A validated configuration is being applied (the loop should not sleep)."""
        return self._applying is not None

    def request(self, *, dry_run: bool = False) -> asyncio.Future[Report]:
        """Queue a reload (or a dry run: the files are read the same way, and what they would
        change is worked out on copies of the live shops); the future says how it went."""
        future: asyncio.Future[Report] = asyncio.get_running_loop().create_future()
        self._asked.append((future, dry_run))
        return future

    def step(self, config: FenliuConfig, engine: Engine, now: int) -> Applied:
        """Between two batches: apply the next slice, take a finished read, or start one."""
        if self._applying is not None:
            return self._apply_slice(config, engine, now)
        if self._reading is not None and self._reading.done():
            reading, self._reading = self._reading, None
            waiting, self._read_for = self._read_for, []
            try:
                new = reading.result()
            except ConfigError as exc:
                self._refuse([f for f, _ in waiting], [str(p) for p in exc.problems])
            else:
                self._keep()
                self._dry_run(new, [f for f, dry in waiting if dry], engine, now)
                applying = [f for f, dry in waiting if not dry]
                if applying:
                    self._start_apply(new, applying, engine)
                    return self._apply_slice(config, engine, now)
        if self._reading is None and self._asked:
            self._read_for, self._asked = self._asked, []
            self._read_started = time.perf_counter()
            self._reading = asyncio.create_task(
                asyncio.to_thread(load_config, config.config_path), name="reload-read"
            )
        return Applied()

    def close(self) -> None:
        """The service stops: a read in flight is let go (its thread finishes on its own),
        and every reload not applied is answered so."""
        if self._reading is not None:
            self._reading.cancel()
            self._reading = None
        for task in self._dry_runs:
            task.cancel()
        waiting = [f for f, _ in self._asked + self._read_for]
        waiting += self._applying.waiting if self._applying else []
        self._asked, self._read_for, self._applying = [], [], None
        _settle(waiting, Report("the daemon stopped before the reload was applied"), ok=False)

    def _dry_run(
        self, new: FenliuConfig, waiting: list[asyncio.Future[Report]], engine: Engine, now: int
    ) -> None:
        """Copy out the live shops the files change (on the loop: a snapshot each), then work
        out what the files would do to them in a worker thread, and answer `waiting`."""
        if not waiting:
            return
        seen = plan.capture(engine, new.shop_configs)
        task = asyncio.create_task(self._finish_dry_run(seen, new, waiting, now))
        self._dry_runs.add(task)
        task.add_done_callback(self._dry_runs.discard)

    async def _finish_dry_run(
        self, seen: plan.Capture, new: FenliuConfig, waiting: list[asyncio.Future[Report]], now: int
    ) -> None:
        shops = new.shop_configs
        try:
            plans = await asyncio.to_thread(plan.work_out, seen, shops, now)
        except asyncio.CancelledError:  # `close`: the daemon stops
            _settle(waiting, Report("the daemon stopped before the dry run was done"), ok=False)
            raise
        self._keep()
        self._log.info("reload_dry_run", shops=len(shops), changed=len(plans))
        text = f"dry run: {len(plans)} of {len(shops)} shop(s) would change"
        _settle(waiting, Report(text, [p.as_json() for p in plans], applied=False), ok=True)

    def _refuse(self, waiting: list[asyncio.Future[Report]], problems: list[str]) -> None:
        self._metrics.reloaded(ok=False)
        self._log.error("reload_failed", problems=problems)
        text = "reload refused; nothing changed:\n" + "\n".join(problems)
        _settle(waiting, Report(text), ok=False)

    def _start_apply(
        self, new: FenliuConfig, waiting: list[asyncio.Future[Report]], engine: Engine
    ) -> None:
        todo = [s for s, c in new.shop_configs.items() if engine.configs.get(s) != c]
        removed = [s for s in engine.configs if s not in new.shop_configs]
        self._applying = _Applying(
            new, waiting, todo, len(todo) + len(removed),
            reshaped=set(new.shop_configs) != set(engine.configs), started=self._read_started,
        )  # fmt: skip

    def _apply_slice(self, config: FenliuConfig, engine: Engine, now: int) -> Applied:
        applying = self._applying
        assert applying is not None
        new = applying.new.shop_configs
        if len(applying.todo) > applying.slice:  # removed shops go with the first slice
            started = time.perf_counter()
            part, applying.todo = applying.todo[: applying.slice], applying.todo[applying.slice :]
            shops = {s: c for s, c in engine.configs.items() if s in new}
            shops.update((s, new[s]) for s in part)
            outputs, plans = plan.apply(engine, shops, now)
            applying.plans += plans
            self._keep()
            took = max(time.perf_counter() - started, 1e-6)
            fit = int(len(part) * APPLY_BUDGET_S / took)  # halved or doubled at most: a
            size = min(max(fit, applying.slice // 2), applying.slice * 2)  # preempted step
            applying.slice = max(MIN_SLICE, size)  # does not shrink the rest to a crawl
            return Applied(outputs)
        outputs, plans = plan.apply(engine, new, now)  # the last slice: the new files exactly
        applying.plans += plans
        self._keep()
        self._applying = None
        restart = [
            k for k in ("kafka", "redis", "http") if getattr(applying.new, k) != getattr(config, k)
        ]
        self._metrics.reloaded(ok=True)
        self._log.info(
            "reload_ok",
            shops=len(new),
            changed=applying.changed,
            needs_restart=restart,
            seconds=round(time.perf_counter() - applying.started, 3),
        )
        note = f" ({', '.join(restart)} changes need a restart)" if restart else ""
        done = [p.as_json() for p in sorted(applying.plans, key=lambda p: p.shop)]
        _settle(applying.waiting, Report(f"reloaded {len(new)} shop(s){note}", done), ok=True)
        in_force = config.model_copy(update={"shop_configs": new})
        return Applied(outputs, in_force, applying.reshaped)


def _settle(futures: list[asyncio.Future[Report]], report: Report, *, ok: bool) -> None:
    for future in futures:
        if not future.done():
            if ok:
                future.set_result(report)
            else:
                future.set_exception(ReloadRefused(report.message))
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
        if not is_local(request):
            return web.Response(status=403, text="reload is accepted from this machine only\n")
        dry_run = request.query.get("dry_run") in ("1", "true")
        try:
            asked = service.request_reload(dry_run=dry_run)
            report = await asyncio.wait_for(asked, timeout=RELOAD_WAIT_S)
        except ReloadRefused as exc:
            return web.Response(status=422, text=f"{exc}\n")
        except TimeoutError:
            return web.Response(status=503, text=f"reload not applied within {RELOAD_WAIT_S} s\n")
        if request.query.get("format") == "json":
            return web.json_response(report.json(), dumps=lambda v: orjson.dumps(v).decode())
        return web.Response(text=report.text())

    return [
        web.get("/metrics", metrics),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.post("/-/reload", reload),
        *api_routes(service),
    ]
