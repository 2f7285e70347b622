"""The console (`GET /`, daemon/console/index.html) in a real browser against a real daemon.

Debian's chromium driven by Playwright (tests/browser.py); the daemon is the real `fenliu
run` process on the session's Tansu broker and Redis (the module daemon of
tests/system/conftest.py, serving SHOPS), fed through Kafka by `tests.e2e.Wire`.
Nothing here measures speed: each check waits (Playwright's `expect`) for what the page
must come to show by polling the JSON API. Every page's script errors and console errors
are collected, and a test fails on any it did not expect.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from daemon.config import TopicsConfig
from daemon.core.config import ShopConfig
from daemon.dev.stack import Broker, RedisServer
from tests.browser import Watched, chromium, require_browser
from tests.console_shot import shoot
from tests.e2e import DaemonProcess, Wire, write_config

pytestmark = pytest.mark.e2e

WAIT_MS = 20_000  # what the page must come to show, it shows within this (polls every 1.5 s)
TOKEN = "console-test-token-7f3a"


def queue_shop(shop_id: str) -> str:
    """Two agents with a cap of one, queueing on, long sessions (nobody leaves the line); a
    buyer owed a reply is shown waiting too long after 1 s."""
    return f"""
id = "{shop_id}"
sticky_window = 0
[queue]
enabled = true
default_cap = 1
session_timeout = "10m"
update_interval = "1s"
[[agents]]
id = "a1"
[[agents]]
id = "a2"
[[groups]]
name = "g"
agents = ["a1", "a2"]
[replies]
warn_after = "1s"
"""


SHOPS = {"floor": queue_shop("floor"), "quiet": queue_shop("quiet").replace('"a2"', '"q2"')}


def token_daemon(
    broker: Broker, redis_url: str, topics: TopicsConfig, folder: Path
) -> DaemonProcess:
    """A daemon of its own serving SHOPS on `topics`, with `[http] token = TOKEN`."""
    config = write_config(
        folder, bootstrap=broker.bootstrap, redis_url=redis_url, topics=topics, shops=SHOPS
    )
    text = config.read_text().replace("[http]\n", f'[http]\ntoken = "{TOKEN}"\n', 1)
    config.write_text(text)
    return DaemonProcess(config).start()


async def test_the_console_shows_agents_and_queue_and_follows_new_buyers(
    daemon: DaemonProcess, broker: Broker, topics: TopicsConfig
) -> None:
    """Agents with load against cap and status, the line in order with priority, decisions
    and the explanation; an agent's oldest owed reply, marked once past `warn_after`; a
    buyer who joins later appears without a reload; a buyer id that looks like markup is
    shown as text; no script or console error on the way."""
    from playwright.async_api import expect

    require_browser()
    async with Wire(broker.bootstrap, topics, "floor") as w, chromium() as browser:
        await w.status("a1", "online")
        await w.status("a2", "online")
        await w.status("a2", "suspended")
        await w.inquiry("b0")
        await w.assignment("b0")
        await w.inquiry("b1")
        await w.inquiry("b2", priority=1)
        await w.wait_for(lambda e: e.get("status") == "queued", count=2)

        watched = await Watched.open(browser)
        page = watched.page
        await page.goto(f"http://{daemon.http}/#shop=floor")
        await page.evaluate("window.sameDocument = true")  # gone if the page ever reloads

        a1 = page.locator('#agents tr[data-agent="a1"]')
        await expect(a1).to_contain_text("1 / 1", timeout=WAIT_MS)
        await expect(a1).to_contain_text("在线 online")
        await expect(page.locator('#agents tr[data-agent="a2"]')).to_contain_text("挂起 suspended")
        line = page.locator("#queues tr[data-buyer]")
        await expect(line).to_have_count(2, timeout=WAIT_MS)
        await expect(line.nth(0)).to_contain_text("b2")  # priority first
        await expect(line.nth(0)).to_contain_text("优先 +1")
        await expect(line.nth(1)).to_contain_text("b1")
        await expect(page.locator("#decisions")).to_contain_text("效率优先 efficiency")
        await expect(page.locator('#explain tr[data-agent="a1"]')).to_contain_text("100.0%")
        await expect(page.locator("#mode")).to_have_text("效率优先 efficiency")
        version = ShopConfig.model_validate(tomllib.loads(queue_shop("floor"))).version
        await expect(page.locator("#config")).to_contain_text(f"配置 config {version} · ")

        await w.send(topics.messages, {"type": "message", "buyer_id": "b0", "from": "buyer"})
        owed = page.locator('#agents tr[data-agent="a1"] td.owed-age')
        await expect(owed).to_contain_text("1 等待过久 waiting too long", timeout=WAIT_MS)
        await expect(owed).to_have_class("num owed-age warn")
        await expect(page.locator('#agents tr[data-agent="a2"] td.owed-age')).to_have_text("—")

        hostile = '<img src=x onerror="window.pwned=1">'
        await w.inquiry("b3")
        await w.inquiry(hostile)
        await w.wait_for(lambda e: e.get("buyer_id") == hostile and e.get("status") == "queued")
        await expect(line).to_have_count(4, timeout=WAIT_MS)
        await expect(page.locator('#queues tr[data-buyer="b3"]')).to_contain_text("#3")
        shown = page.locator("#queues tr[data-buyer]").nth(3).locator("td.id")
        await expect(shown).to_have_text(hostile)
        assert await page.evaluate("window.sameDocument === true && window.pwned === undefined")
        assert await page.locator("#queues img").count() == 0

        picker = page.locator("#shop")
        await expect(picker.locator("option")).to_have_count(2)
        await picker.select_option("quiet")
        await expect(page.locator('#agents tr[data-agent="q2"]')).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#queues")).to_contain_text("nobody")
        assert page.url.endswith("#shop=quiet")
        assert watched.problems == []


async def test_with_a_token_the_console_keeps_it_and_without_it_says_401(
    broker: Broker,
    redis_server: RedisServer,
    fresh_topics: TopicsConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`[http] token`: opened as /?token=…, the page works, drops the token from the address
    bar and keeps it for the tab, so a reload still works; opened without it, or with a wrong
    one, the browser is told a token is needed (401) and shown no data."""
    from playwright.async_api import expect

    require_browser()
    folder = tmp_path_factory.mktemp("token")
    process = token_daemon(broker, redis_server.url, fresh_topics, folder)
    refusal = ("status of 401",)  # the browser's own console line for a 401 answer
    try:
        async with chromium() as browser:
            watched = await Watched.open(browser, allowed=refusal)
            page = watched.page
            await page.goto(f"http://{process.http}/?token={TOKEN}#shop=floor")
            agents = page.locator("#agents tr[data-agent]")
            await expect(agents).to_have_count(2, timeout=WAIT_MS)
            assert TOKEN not in page.url and page.url.endswith("/#shop=floor")
            assert await page.evaluate("sessionStorage.getItem('fenliu.token')") == TOKEN
            await page.reload()
            await expect(agents).to_have_count(2, timeout=WAIT_MS)
            assert TOKEN not in page.url
            assert watched.problems == []

            for address, said in [("/", "?token="), ("/?token=wrong", "refused")]:
                refused = await Watched.open(browser, allowed=refusal)
                answer = await refused.page.goto(f"http://{process.http}{address}")
                assert answer is not None and answer.status == 401
                alert = refused.page.get_by_role("alert")
                await expect(alert).to_contain_text("401 · 需要访问令牌 A token is needed")
                await expect(alert).to_contain_text(said)
                assert "token=" not in refused.page.url
                assert await refused.page.evaluate("sessionStorage.length") == 0
                assert refused.problems == []
    finally:
        code, _ = process.stop()
    assert code == 0, process.log_tail()


async def test_fenliu_dev_prints_the_console_first_and_it_shows_the_live_shop(
    tmp_path: Path,
) -> None:
    """The first line of `fenliu dev` is the console's address; the page there shows the dev
    shop's agents, decisions and explanation without a script or console error (what
    `python -m tests.console_shot` screenshots for docs/development.md)."""
    require_browser()
    out = tmp_path / "console.png"
    problems = await shoot(out, settle_s=3, rate=2)
    assert problems == []
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
