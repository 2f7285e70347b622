"""A reload's steps between batches (daemon.service.control_plane.Reloads, contract §5,
Reload): the files are read and validated off the event loop, a validated configuration is
applied a slice of shops at a time, and one that does not validate changes nothing."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from daemon.config import FenliuConfig, load_config
from daemon.core.engine import Engine
from daemon.service import control_plane
from daemon.service.control_plane import FIRST_SLICE, ReloadRefused, Reloads
from daemon.service.metrics import Metrics

DAEMON_FILE = """
[kafka]
bootstrap_servers = "127.0.0.1:9092"
[redis]
url = "redis://127.0.0.1:6379/0"
[shops]
dir = "shops"
"""


SHOP = """id = "s{n}"
[[agents]]
id = "a1"
cap = {cap}
[[groups]]
name = "all"
agents = ["a1"]
"""


class Log:
    """Records what a reload logs."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    error = info


def _write(folder: Path, shops: int, cap: int) -> Path:
    (folder / "shops").mkdir(exist_ok=True)
    for n in range(shops):
        text = SHOP.format(n=n, cap=cap)
        (folder / "shops" / f"s{n}.toml").write_text(text)
    path = folder / "fenliu.toml"
    path.write_text(DAEMON_FILE)
    return path


def _gauges(metrics: Metrics) -> tuple[float, float, float]:
    lines = metrics.render().decode().splitlines()
    samples = {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in lines if ln[:1] != "#"}
    return (
        samples["fenliu_config_last_reload_successful"],
        samples["fenliu_config_last_reload_success_timestamp_seconds"],
        samples['fenliu_reloads_total{result="failed"}'],
    )


async def _until_applied(
    reloads: Reloads, config: FenliuConfig, engine: Engine
) -> tuple[FenliuConfig, int]:
    """Step as the loop does between batches until the reload is in force; the steps taken."""
    steps = 0
    while True:
        steps += 1
        applied = reloads.step(config, engine, 0)
        if applied.config is not None:
            return applied.config, steps
        await asyncio.sleep(0.001)


async def test_the_files_are_read_off_the_loop_while_it_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read is held on an Event the test controls: meanwhile the loop runs other work
    and the reload's steps return at once, applying nothing; released, it is applied."""
    config = load_config(_write(tmp_path, 3, cap=1))
    engine = Engine(config.shop_configs)
    _write(tmp_path, 3, cap=5)
    release, reading = threading.Event(), threading.Event()

    def slow_load(path: Path) -> FenliuConfig:
        reading.set()
        assert release.wait(timeout=30)
        return load_config(path)

    monkeypatch.setattr(control_plane, "load_config", slow_load)
    reloads = Reloads(metrics=Metrics(), log=Log())
    asked = reloads.request()
    assert reloads.step(config, engine, 0).outputs == []  # the read starts in a thread
    assert await asyncio.to_thread(reading.wait, 30)
    for _ in range(5):  # the loop serves, and steps change nothing while the files are read
        await asyncio.sleep(0)
        assert reloads.step(config, engine, 0).config is None
    assert engine.configs["s0"].agents[0].cap == 1 and not asked.done()
    release.set()
    new, _ = await _until_applied(reloads, config, engine)
    assert engine.configs["s0"].agents[0].cap == 5 == new.shop_configs["s0"].agents[0].cap
    assert (await asked).message.startswith("reloaded 3 shop(s)")


async def test_many_changed_shops_are_applied_a_slice_at_a_time(tmp_path: Path) -> None:
    shops = FIRST_SLICE * 3
    config = load_config(_write(tmp_path, shops, cap=1))
    engine = Engine(config.shop_configs)
    _write(tmp_path, shops, cap=2)
    reloads = Reloads(metrics=Metrics(), log=Log())
    asked = reloads.request()
    steps_applying = 0
    while not asked.done():
        applied = reloads.step(config, engine, 0)
        caps = [c.agents[0].cap for c in engine.configs.values()]
        if 2 in caps:
            steps_applying += 1
            assert len(engine.shops) == shops  # every step leaves each shop whole
        await asyncio.sleep(0.001)
    assert applied.config is not None and steps_applying >= 2
    assert engine.configs == applied.config.shop_configs


async def test_a_dry_run_reports_every_changed_shop_and_applies_nothing(tmp_path: Path) -> None:
    """contract §5, Dry run: worked out off the loop on copies; then the real reload reports
    the same, slice by slice."""
    shops = FIRST_SLICE * 3
    config = load_config(_write(tmp_path, shops, cap=1))
    engine = Engine(config.shop_configs)
    before = dict(engine.configs)
    _write(tmp_path, shops, cap=2)
    reloads = Reloads(metrics=Metrics(), log=Log())
    asked = reloads.request(dry_run=True)
    while not asked.done():
        assert reloads.step(config, engine, 0).outputs == []
        await asyncio.sleep(0.001)
    report = await asked
    assert engine.configs == before and not report.applied
    assert [p["shop"] for p in report.shops] == sorted(f"s{n}" for n in range(shops))
    assert {tuple(p["changes"]) for p in report.shops} == {("agent a1 cap: 1 -> 2",)}
    assert f"Dry run, nothing applied: 0 added, {shops} modified, 0 removed." in report.text()
    asked = reloads.request()
    await _until_applied(reloads, config, engine)
    applied = await asked
    assert applied.applied and applied.shops == report.shops


async def test_a_refused_reload_changes_nothing(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, 2, cap=1))
    engine = Engine(config.shop_configs)
    before = dict(engine.configs), dict(engine.shops)
    metrics, log = Metrics(), Log()
    ok_at = _gauges(metrics)[1]
    (tmp_path / "shops" / "s1.toml").write_text('id = "s1"\nmode = "fastest"\n')
    reloads = Reloads(metrics=metrics, log=log)
    asked = reloads.request()
    while not asked.done():
        assert reloads.step(config, engine, 0).outputs == []
        await asyncio.sleep(0.001)
    with pytest.raises(ReloadRefused, match="mode"):
        await asked
    assert (dict(engine.configs), dict(engine.shops)) == before
    assert _gauges(metrics) == (0.0, ok_at, 1.0)
    assert [e for e, _ in log.events] == ["reload_failed"]
    (tmp_path / "shops" / "s1.toml").write_text(SHOP.format(n=1, cap=3))
    reloads.request()
    await _until_applied(reloads, config, engine)
    successful, ok_again, failed = _gauges(metrics)
    assert successful == 1.0 and ok_again >= ok_at and failed == 1.0


async def test_a_reload_asked_for_during_a_read_gets_a_read_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit made after a read began is seen by the reload asked for after it."""
    config = load_config(_write(tmp_path, 1, cap=1))
    engine = Engine(config.shop_configs)
    release = threading.Event()
    reads: list[int] = []

    def held_load(path: Path) -> FenliuConfig:
        reads.append(1)
        if len(reads) == 1:
            assert release.wait(timeout=30)
        return load_config(path)

    monkeypatch.setattr(control_plane, "load_config", held_load)
    reloads = Reloads(metrics=Metrics(), log=Log())
    first = reloads.request()
    reloads.step(config, engine, 0)
    await asyncio.sleep(0)
    _write(tmp_path, 1, cap=4)
    second = reloads.request()
    release.set()
    config, _ = await _until_applied(reloads, config, engine)
    await first
    assert not second.done() and engine.configs["s0"].agents[0].cap in (1, 4)
    await _until_applied(reloads, config, engine)
    await second
    assert engine.configs["s0"].agents[0].cap == 4 and len(reads) == 2


async def test_a_reload_not_applied_when_the_service_stops_is_answered_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(_write(tmp_path, 1, cap=1))
    engine = Engine(config.shop_configs)
    release = threading.Event()

    def held_load(path: Path) -> FenliuConfig:
        assert release.wait(timeout=30)
        return load_config(path)

    monkeypatch.setattr(control_plane, "load_config", held_load)
    reloads = Reloads(metrics=Metrics(), log=Log())
    reading = reloads.request()
    reloads.step(config, engine, 0)  # its read starts
    later = reloads.request()
    reloads.close()
    release.set()
    for asked in (reading, later):
        with pytest.raises(ReloadRefused, match="stopped"):
            await asked
    assert not reloads.busy and engine.configs == config.shop_configs
