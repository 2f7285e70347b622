"""A readmission Redis does not answer (daemon.service.restore.Ownership.readmit over a real
Redis): the failure is logged, the shop stays quarantined with its records held, and the
release a reload asked for is tried again until it goes through."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka.structs import TopicPartition
from structlog.testing import capture_logs

from daemon.core.config import ShopConfig
from daemon.core.engine import Engine
from daemon.service.checkpoint import Checkpoint
from daemon.service.checkpoint_types import Batch
from daemon.service.delivery import Refusals
from daemon.service.logs import get_logger
from daemon.service.metrics import Metrics
from daemon.service.restore import Ownership
from daemon.service.store import Store, StoredShop, StoreError

SHOP = "s1"
TOPIC = "in"
CONFIG = ShopConfig.model_validate(
    tomllib.loads('id = "s1"\n[[agents]]\nid = "a1"\n[[groups]]\nname = "all"\nagents = ["a1"]\n')
)


class Unassigned:
    """The consumer as far as a readmission of shops asks it: no partition to claim."""

    def assignment(self) -> set[TopicPartition]:
        return set()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis_client = aioredis.Redis.from_url(redis_url)
    try:
        yield redis_client
    finally:
        await redis_client.aclose()


async def test_a_release_redis_does_not_answer_is_logged_keeps_the_shop_safe_and_is_retried(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = Checkpoint(
        Engine({SHOP: CONFIG}, track=True), Store(client, "t", dedup_capacity=1000)
    )
    await checkpoint.restore([0], 1)
    checkpoint.put_aside(SHOP, "engine failed: boom")
    batch = Batch()
    checkpoint.consumed(batch, SHOP, TOPIC, 0, 7)  # a record of the shop: held, not applied
    metrics, log = Metrics(), get_logger()
    refusals = Refusals(checkpoint, "dead", metrics, log, lambda shops: None)
    ownership = Ownership(
        checkpoint, stopping=lambda: False, refusals=refusals, metrics=metrics, log=log
    )
    store = checkpoint.store
    answer = store.claim_shops

    async def unanswered(shop_ids: Iterable[str]) -> dict[str, StoredShop | StoreError]:
        raise StoreError("shops not claimed: unreachable: Connect call failed")

    monkeypatch.setattr(store, "claim_shops", unanswered)
    consumer: Any = Unassigned()
    with capture_logs() as logs:
        await ownership.readmit(consumer, None, released=True)  # a reload released it
    failed = [line for line in logs if line["event"] == "readmit_failed"]
    assert len(failed) == 1 and "unreachable" in failed[0]["error"], logs
    assert failed[0]["log_level"] == "warning" and failed[0]["shops"] == 1
    assert SHOP in checkpoint.held.quarantined, "still quarantined: nothing of it is served"
    assert checkpoint.held.quarantined[SHOP].holds == {TOPIC: 7}, "its records are held"
    assert ownership.waiting, "the release is tried again"

    monkeypatch.setattr(store, "claim_shops", answer)  # Redis answers again
    with capture_logs() as logs:
        await ownership.readmit(consumer, None, released=False)  # the service's retry
    assert not checkpoint.held.set_aside and checkpoint.held.owns(SHOP), "the release went through"
    assert [line["shops"] for line in logs if line["event"] == "readmitted"] == [1]
    assert not ownership.waiting
