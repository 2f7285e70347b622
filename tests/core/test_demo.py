"""`fenliu demo` (daemon/dev/demo.py): the scripted scenario runs and shows the routing rules."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from rich.console import Console

from daemon.dev.demo import DEFAULT_SHOP, run_demo

SMALL_SHOP = Path(__file__).resolve().parents[2] / "config" / "shops" / "small.toml"
DECISION = re.compile(r"^\d\d:\d\d:\d\d (\S+)\s+(\S+)\s+(\S+)", re.MULTILINE)


def _decisions(text: str) -> list[str]:
    """The third column of every decision line: a reason, `closed` or a queue status."""
    return [m.group(3) for m in DECISION.finditer(text) if m.group(1) != "▸"]


def test_demo_exits_0_and_shows_several_assignment_reasons_and_queueing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.perf_counter()
    assert run_demo() == 0
    assert time.perf_counter() - started < 5
    out = capsys.readouterr().out
    shown = set(_decisions(out))
    reasons = {"routed", "dequeued", "sticky", "repeat_entry", "transfer", "active_session"}
    assert reasons <= shown, f"missing reasons: {reasons - shown}"
    assert {"queued", "waiting", "left", "closed"} <= shown
    assert "#1 in presale" in out  # a queue update carries position and estimate
    assert re.search(r"queued\s+#\d+ in general", out), "no overflow to general"
    assert "Agents at the end" in out
    assert "Groups at the end" in out


def test_demo_is_deterministic() -> None:
    runs = []
    for _ in range(2):
        buffer = io.StringIO()
        assert run_demo(console=Console(file=buffer, width=120, color_system=None)) == 0
        runs.append(buffer.getvalue())
    assert runs[0] == runs[1]


def test_demo_runs_on_another_shop_file() -> None:
    buffer = io.StringIO()
    assert run_demo(SMALL_SHOP, file=buffer) == 0
    assert "routed" in _decisions(buffer.getvalue())


def test_demo_reports_an_unreadable_shop_file_and_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('id = "x"\nmode = "fastest"\n')
    buffer = io.StringIO()
    assert run_demo(bad, file=buffer) != 0
    assert str(bad) in buffer.getvalue().replace("\n", "")  # a long tmp path wraps at 80


def test_default_shop_is_the_big_example() -> None:
    assert DEFAULT_SHOP.name == "big.toml"
    assert DEFAULT_SHOP.is_file()
