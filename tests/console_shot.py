"""The console of a real `fenliu dev` run, in a real browser: what docs/development.md's screenshot
(docs/console.png) is made with, and what tests/system/test_console.py checks.

    python -m tests.console_shot [--out docs/console.png] [--settle 40] [--rate 2]

starts `fenliu dev` (its broker, Redis, daemon and simulated shop floor), reads the console's
address from the first line it prints, lets the traffic run for `--settle` seconds, opens the
console in Debian's chromium (Playwright; tests/browser.py), waits until it shows the shop,
and saves a full-page PNG. Then it stops `fenliu dev` (SIGTERM to the process it started) and
waits for it (the run's folder is removed). Chinese labels need a CJK font (Debian: fonts-noto-cjk).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.browser import Watched, browser_missing, chromium

REPO = Path(__file__).resolve().parents[1]
ADDRESS = re.compile(r"^console (http://\S+/)")
KEPT = re.compile(r"files kept in (\S+)$")
START_S = 30.0  # the first line comes at once; this is a generous bound
STOP_S = 30.0
WAIT_MS = 30_000


@dataclass
class DevRun:
    """A running `fenliu dev` child process and what it printed."""

    proc: asyncio.subprocess.Process
    address: str
    lines: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def fenliu_dev(duration_s: float, rate: float) -> AsyncIterator[DevRun]:
    """`fenliu dev --duration …` (this checkout's), until the block ends; then SIGTERM to it
    (if still running) and its exit awaited; its output is kept on the `DevRun`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.cli", "dev",
        "--duration", f"{duration_s:g}", "--rate", f"{rate:g}",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    reader: asyncio.Task[None] | None = None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), START_S)).decode()
        found = ADDRESS.match(first)
        if found is None:
            rest = (await asyncio.wait_for(proc.stdout.read(), STOP_S)).decode()
            raise AssertionError(f"`fenliu dev` did not print the console first:\n{first}{rest}")
        run = DevRun(proc, found.group(1), [first.rstrip()])
        reader = asyncio.create_task(_keep_lines(proc.stdout, run.lines))
        yield run
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if reader is not None:
            await reader
            kept = [m.group(1) for line in run.lines if (m := KEPT.search(line))]
            for folder in kept:
                shutil.rmtree(folder, ignore_errors=True)


async def _keep_lines(stream: asyncio.StreamReader, lines: list[str]) -> None:
    async for line in stream:
        lines.append(line.decode(errors="replace").rstrip())  # noqa: PERF401 (as they come)


async def until_ready(run: DevRun) -> None:
    """Wait for the daemon to be ready (`fenliu dev` prints progress lines from then on)."""
    while not any(line.startswith("[") for line in run.lines):
        if run.proc.returncode is not None:
            raise AssertionError("`fenliu dev` ended early:\n" + "\n".join(run.lines))
        await asyncio.sleep(0.2)


async def shoot(out: Path, settle_s: float, rate: float) -> list[str]:
    """Run `fenliu dev`, screenshot its console after `settle_s` of traffic into `out`;
    the script errors and console errors the page showed (none expected)."""
    async with fenliu_dev(settle_s + 120, rate) as run, chromium() as browser:
        await until_ready(run)
        await asyncio.sleep(settle_s)
        watched = await Watched.open(browser)
        page = watched.page
        await page.goto(run.address)
        await page.locator("#agents tr[data-agent]").first.wait_for(timeout=WAIT_MS)
        await page.locator("#explain tr[data-agent]").first.wait_for(timeout=WAIT_MS)
        await page.locator("#decisions tr[data-type]").first.wait_for(timeout=WAIT_MS)
        await asyncio.sleep(2)  # one more poll: every part drawn from the same answer
        out.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(out), full_page=True)
        return watched.problems


def main() -> int:
    """The command line (module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tests.console_shot", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "console.png")
    parser.add_argument("--settle", type=float, default=40.0, help="seconds of traffic first")
    parser.add_argument("--rate", type=float, default=2.0, help="buyers per second")
    args = parser.parse_args()
    missing = browser_missing()
    if missing is not None:
        print(f"cannot take the screenshot: {missing}", file=sys.stderr)
        return 2
    problems = asyncio.run(shoot(args.out, args.settle, args.rate))
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"wrote {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
