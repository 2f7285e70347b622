"""`fenliu dev` (daemon/dev/command.py) end to end: the real command with a real broker and
Redis, and nothing outlives it. Its simulated shop floor and live view:
tests/core/test_dev_traffic.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

STACK = re.compile(r"^(broker|redis) .*127\.0\.0\.1:(\d+)\S*  pid (\d+)$", re.MULTILINE)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(") ", 1)[1][0] != "Z"


def _stack_processes() -> list[str]:
    found = subprocess.run(
        ["pgrep", "-af", "tansu|redis-server"], capture_output=True, text=True, check=False
    )
    return found.stdout.splitlines()


@pytest.mark.e2e
def test_fenliu_dev_runs_the_stack_and_leaves_nothing_behind() -> None:
    """`fenliu dev --duration 12`: exit 0 within a minute, a summary with assignments of
    several reasons, and neither its broker nor its redis-server still running."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "dev", "--duration", "12"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = done.stdout
    kept = re.search(r"files kept in (\S+)$", out, re.MULTILINE)
    if kept is not None:
        shutil.rmtree(kept.group(1), ignore_errors=True)
    assert done.returncode == 0, f"exit {done.returncode}\n{out}\n{done.stderr}"
    assert re.match(r"console http://127\.0\.0\.1:\d+/ ", out), out  # the first line
    assert time.monotonic() - started < 60
    stack = {name: (port, int(pid)) for name, port, pid in STACK.findall(out)}
    assert set(stack) == {"broker", "redis"}, out
    assert "[   5s]" in out  # progress lines, not the live view
    summary = re.search(r"^  assignments  (\d+): (.+)$", out, re.MULTILINE)
    assert summary is not None, out
    assert int(summary.group(1)) > 0
    assert len(re.findall(r"(\w+) (\d+)", summary.group(2))) >= 2, summary.group(0)
    assert re.search(r"^  rejected     0$", out, re.MULTILINE), out
    assert not [name for name, (_, pid) in stack.items() if _alive(pid)], out
    ports = [f"127.0.0.1:{port}" for port, _ in stack.values()]
    assert not [p for p in _stack_processes() if any(port in p for port in ports)]
