"""`fenliu experiment report` (contract §3.7, §8) against a real redis-server: a shop's
checkpoint written through the real store (tests/grey_shop.py: experiment t0 finished, t1
running with its treatment arm stopped by a guardrail), read back by the command as a person
and as JSON, without claiming the shop; and the clear refusals when there is nothing to
report."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from daemon.config import TopicsConfig
from daemon.core.view import experiments_view
from daemon.service.store import Store
from tests.api_schemas import api_schema
from tests.e2e import run_fenliu, write_config
from tests.grey_shop import GREY_SHOP, grey_config, grey_scenario, write_checkpoint
from tests.scenario import SHOP, Scenario

PREFIX = "grey"


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield Store(client, PREFIX, dedup_capacity=1000)
    finally:
        await client.aclose()


def _config(folder: Path, redis_url: str) -> Path:
    """A fenliu.toml naming the test's Redis and PREFIX, with the shop's file (no Kafka is
    asked)."""
    return write_config(
        folder, bootstrap="127.0.0.1:1", redis_url=redis_url, topics=TopicsConfig(),
        shops={SHOP: GREY_SHOP}, key_prefix=PREFIX,
    )  # fmt: skip


async def _report(*args: str) -> tuple[int, str, str]:
    done = await asyncio.to_thread(run_fenliu, "experiment", "report", *args)
    return done.returncode, done.stdout, done.stderr


async def test_the_report_reads_the_running_and_the_finished_experiments_from_redis(
    store: Store, redis_url: str, tmp_path: Path
) -> None:
    sc = grey_scenario()
    await write_checkpoint(sc, store)
    config = _config(tmp_path, redis_url)
    epoch = await store.client.hget(store.key(SHOP, "meta"), "epoch")

    code, out, err = await _report("--config", str(config), "--shop", SHOP, "--json")
    assert (code, err) == (0, "")
    shown = orjson.loads(out)
    api_schema("experiment").validate(shown)
    shop = sc.engine.shop(SHOP)
    assert shown == experiments_view(SHOP, shop.state.experiments, shop.now)
    assert shown["running"]["name"] == "t1" and [e["name"] for e in shown["finished"]] == ["t0"]

    code, out, err = await _report("--config", str(config), "--shop", SHOP)
    assert (code, err) == (0, "")
    assert "experiment t1 (running): started" in out
    assert "experiment t0 (finished): started" in out and out.index("t1") < out.index("t0")
    assert "  treatment stopped by guardrail replies_within_deadline at " in out
    rows = [line.split() for line in out.splitlines() if line.startswith("  treatment  ")]
    assert rows[0][-1] == "stopped" and rows[1][-1] == "ended"

    assert await store.client.hget(store.key(SHOP, "meta"), "epoch") == epoch, "not claimed"


async def test_a_shop_without_a_checkpoint_or_an_experiment_is_refused_clearly(
    store: Store, redis_url: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, redis_url)
    code, out, err = await _report("--config", str(config), "--shop", SHOP)
    assert (code, out) == (1, "")
    assert f"shop {SHOP!r} has no checkpoint (key {PREFIX}:{{{SHOP}}}:meta in " in err

    code, out, err = await _report("--config", str(config), "--shop", "elsewhere")
    assert code == 1 and "and no shop file names it" in err

    plain = Scenario(grey_config(GREY_SHOP.split("[experiment]")[0]), track=True)
    plain.at("0s").online("a1")
    plain.inquiry("b1")
    await write_checkpoint(plain, store)
    code, out, err = await _report("--config", str(config), "--shop", SHOP)
    assert (code, out) == (1, "")
    assert f"shop {SHOP!r} has run no experiment" in err


async def test_redis_not_answering_is_a_clear_failure(tmp_path: Path) -> None:
    config = _config(tmp_path, "redis://127.0.0.1:1/0")
    code, out, err = await _report("--config", str(config), "--shop", SHOP)
    assert (code, out) == (1, "")
    assert "checkpoint not read: unreachable" in err, err
