"""A real browser for the console's tests and its screenshot: Debian's chromium, driven by
Playwright for Python (the pip package only: no browser download, `executable_path`).

    require_browser()   the test's way to find the browser: a skip saying why when it is
                        missing, a failure under CI=true (the test command installs it)
    chromium()          a headless Chromium, closed on the way out
    Watched             a page whose script errors and console errors are collected

`make test` installs chromium when it is missing and we are root (Makefile, `browser`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Error, Page

CHROMIUM = Path(os.environ.get("FENLIU_CHROMIUM", "/usr/bin/chromium"))
INSTALL = "apt-get install -y --no-install-recommends chromium (or `make test` as root)"


def browser_missing() -> str | None:
    """Why the browser cannot run here, or None when it can."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)) and not shutil.which(
        str(CHROMIUM)
    ):
        return f"no chromium at {CHROMIUM}: {INSTALL}"
    return None


def require_browser() -> None:
    """Skip (or, under CI=true, fail) the calling test when the browser is missing."""
    reason = browser_missing()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the console's browser tests cannot run: {reason}")
    pytest.skip(reason)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium (Playwright runs it without its sandbox: we may be root)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Watched:
    """A page and every script error and console error it showed.

    `allowed` are substrings of console errors that a test expects (the browser itself
    logs "Failed to load resource: … 401" when a call is refused).
    """

    page: Page
    allowed: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, browser: Browser, *, allowed: tuple[str, ...] = ()) -> Watched:
        """A new page of its own context (its own sessionStorage), watched from the start."""
        context = await browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        watched = cls(await context.new_page(), allowed)
        watched.page.on("pageerror", watched._on_error)
        watched.page.on("console", watched._on_console)
        return watched

    def _on_error(self, error: Error) -> None:
        self.problems.append(f"script error: {error.message}\n{error.stack or ''}")

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(a in message.text for a in self.allowed):
            self.problems.append(f"console error: {message.text} ({message.location})")
