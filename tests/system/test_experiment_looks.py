"""Where people look at a grey test (contract §3.7), in a real `fenliu run`: the log, the
metrics, the JSON API, the console and `fenliu experiment report`.

The module's daemon serves tests/grey_shop.py's shop from a Redis that already holds its
checkpoint, written through the real store: experiment t0 finished, t1 running with 60
buyers an arm whose agents answered treatment's too late, but without its guardrail. The
shop file the daemon reads adds the guardrail (`replies_within_deadline = "-3pp"`): the same
experiment goes on, and when 20 new buyers come in through Kafka, the guardrail's next look
stops treatment. Each test then reads that stop where a person would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from daemon.config import TopicsConfig
from daemon.dev.stack import Broker, RedisServer
from daemon.service.store import Store
from daemon.tools.topics_admin import create_topics
from tests.api_schemas import api_schema
from tests.browser import Watched, chromium, require_browser
from tests.conftest import run_sync, unique_topics
from tests.e2e import DaemonProcess, Wire, run_fenliu, write_config
from tests.grey_shop import GREY_SHOP, grey_scenario, write_checkpoint
from tests.scenario import SHOP

pytestmark = pytest.mark.e2e

NEW_BUYERS = 20  # sessions opened: the guardrails are looked at every 20 counted
WAIT_MS = 20_000


async def _seed(redis_url: str, prefix: str) -> None:
    """The shop's checkpoint before the daemon starts (module docstring)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        await write_checkpoint(
            grey_scenario(guardrail=False), Store(client, prefix, dedup_capacity=1000)
        )
    finally:
        await client.aclose()


async def _new_buyers(broker: Broker, topics: TopicsConfig) -> None:
    async with Wire(broker.bootstrap, topics, SHOP) as wire:
        for n in range(NEW_BUYERS):
            await wire.inquiry(f"new{n}")
        await wire.wait_for(
            lambda e: e["type"] == "assignment" and e["buyer_id"].startswith("new"),
            count=NEW_BUYERS,
        )


def api_get(daemon: DaemonProcess, path: str, until: Callable[[Any], bool]) -> Any:
    """GET a JSON answer until `until(data)` holds (a view is built at most once a
    second); the answer then."""
    deadline = time.monotonic() + 20
    while True:
        status, body = daemon.get(path)
        data = orjson.loads(body) if status == 200 else None
        if data is not None and until(data):
            return data
        assert time.monotonic() < deadline, f"{path}: {status} {body}"
        time.sleep(0.2)


def _stopped(tests: Any) -> bool:
    running = tests["running"]
    return running is not None and any(a["stopped"] for a in running["arms"])


@pytest.fixture(scope="module")
def grey_daemon(
    broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    """`fenliu run` serving the shop of the module docstring once treatment is stopped."""
    folder = tmp_path_factory.mktemp("grey")
    topics = unique_topics()
    prefix = topics.inquiries.split(".")[0]
    run_sync(create_topics(broker.bootstrap, topics, partitions=2))
    with RedisServer(log_dir=folder) as redis_server:
        run_sync(_seed(redis_server.url, prefix))
        config = write_config(
            folder, bootstrap=broker.bootstrap, redis_url=redis_server.url, topics=topics,
            shops={SHOP: GREY_SHOP}, key_prefix=prefix,
        )  # fmt: skip
        process = DaemonProcess(config).start()
        run_sync(_new_buyers(broker, topics))
        api_get(process, f"/api/shops/{SHOP}/experiment", _stopped)
        yield process
        code, _ = process.stop()
    assert code == 0, process.log_tail()


def test_the_stop_is_in_the_log_the_metrics_the_api_and_the_report(
    grey_daemon: DaemonProcess,
) -> None:
    lines = [
        orjson.loads(ln) for ln in grey_daemon.log_path.read_text().splitlines() if ln[:1] == "{"
    ]
    stops = [ln for ln in lines if ln.get("event") == "experiment_arm_stopped"]
    assert len(stops) == 1, stops
    assert {k: stops[0][k] for k in ("level", "shop_id", "experiment", "arm", "guardrail")} == {
        "level": "warning", "shop_id": SHOP, "experiment": "t1", "arm": "treatment",
        "guardrail": "replies_within_deadline",
    }  # fmt: skip
    assert "worse than -3pp with 95% confidence" in stops[0]["reason"]

    metrics = grey_daemon.fresh_metrics()
    labels = '{arm="%s",experiment="t1",shop="shop"}'
    assert f"fenliu_experiment_arm_stopped{labels % 'treatment'} 1.0" in metrics
    assert f"fenliu_experiment_arm_stopped{labels % 'control'} 0.0" in metrics
    assert f"fenliu_experiment_replies_within_deadline{labels % 'treatment'} 0.0" in metrics
    buyers = [
        float(line.split()[-1]) for line in metrics.splitlines()
        if line.startswith("fenliu_experiment_buyers_total{")
    ]  # fmt: skip
    assert sum(buyers) == 2 * 60 + NEW_BUYERS

    shop = api_get(grey_daemon, f"/api/shops/{SHOP}", lambda data: True)
    api_schema("shop").validate(shop)
    tests = api_get(grey_daemon, f"/api/shops/{SHOP}/experiment", _stopped)
    api_schema("experiment").validate(tests)
    assert shop["experiment"]["name"] == tests["running"]["name"] == "t1"
    assert [e["name"] for e in tests["finished"]] == ["t0"]
    arms = {a["arm"]: a for a in tests["running"]["arms"]}
    assert arms["treatment"]["stopped"]["why"] == stops[0]["reason"]
    assert arms["control"]["stopped"] is None

    done = run_fenliu("experiment", "report", "--config", str(grey_daemon.config), "--shop", SHOP)
    assert done.returncode == 0, done.stderr
    assert "experiment t1 (running)" in done.stdout and "experiment t0 (finished)" in done.stdout
    assert "  treatment stopped by guardrail replies_within_deadline at " in done.stdout


async def test_the_console_shows_the_running_test_and_the_arm_a_guardrail_stopped(
    grey_daemon: DaemonProcess,
) -> None:
    """The experiment's panel: each arm with its policy, buyers, conversion and uplift with
    their intervals, p95 wait, replies within deadline, and treatment marked as stopped by
    its guardrail with the reason; no script or console error."""
    from playwright.async_api import expect

    require_browser()
    async with chromium() as browser:
        watched = await Watched.open(browser)
        page = watched.page
        await page.goto(f"http://{grey_daemon.http}/#shop={SHOP}")
        card = page.locator("#experiment-card")
        await expect(card).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#experiment-name")).to_have_text("t1")
        await expect(page.locator("#experiment-about")).to_contain_text(
            "护栏 guardrails: replies_within_deadline -3pp"
        )
        treatment = page.locator('#experiment tr[data-arm="treatment"]')
        await expect(treatment).to_contain_text("已被护栏停止 stopped by guardrail")
        await expect(treatment).to_contain_text("worse than -3pp with 95% confidence")
        await expect(treatment).to_contain_text("average")
        await expect(treatment).to_contain_text(" pp")  # the uplift, with its interval
        await expect(treatment.locator("td").nth(8)).to_contain_text("0.0%")  # replies in time
        control = page.locator('#experiment tr[data-arm="control"]')
        await expect(control).to_contain_text("运行中 running")
        await expect(control).to_contain_text("efficiency")
        await expect(control).to_contain_text("对照 control")
        await expect(control.locator("td").nth(8)).to_contain_text("100.0%")
        await expect(page.locator("#experiment-count")).to_have_text("1 组已停止 stopped")
        assert watched.problems == []
