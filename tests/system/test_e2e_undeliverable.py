"""Outputs that cannot be delivered never stop routing (contract §6, issue 23), in process.

- An output too large to send is not put in the outbox: a routing output sets only its shop
  aside (quarantined, the cause logged, counted as `oversized`); a dead letter too large is
  dropped and counted, and its shop goes on.
- An output Kafka refuses for good — when it is handed over (the producer's own size check)
  or when it is acknowledged (an authorization error) — is settled, not retried: only its
  shop is set aside, it is counted as `refused`, its outbox in Redis is emptied, and after a
  restart nothing of it comes back.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError

import daemon.service.startup as startup_module
from daemon.config import KafkaConfig, TopicsConfig, load_config
from daemon.dev.stack import Broker
from daemon.service.run import Service
from daemon.tools.topics_admin import create_topics
from tests.conftest import unique_topics
from tests.e2e import Wire, until, write_config
from topics.codec import encode
from topics.events import Assignment, AssignReason

pytestmark = pytest.mark.e2e

SHOP = """
id = "{id}"
sticky_window = 0
[queue]
enabled = true
default_cap = 5
session_timeout = "60s"
[[agents]]
id = "a1"
[[groups]]
name = "g"
agents = ["a1"]
"""
LONG_BUYER = "b" * 128  # the longest buyer id the contract allows


def _assignment_bytes(shop: str, buyer: str) -> int:
    event = Assignment(
        f"asg:{shop}-1-{time.monotonic_ns()}", shop, int(time.time() * 1000),
        f"{shop}-1-{time.monotonic_ns()}", buyer, "a1", "g", AssignReason.ROUTED, None, 0,
    )  # fmt: skip
    return len(encode(event)) + len(shop) + 40  # + the config version and wider numbers


def _outbox_lengths(redis_url: str, topics: TopicsConfig, shops: list[str]) -> list[int]:
    prefix = topics.inquiries.split(".")[0]
    with redis.Redis.from_url(redis_url) as client:
        return [int(client.llen(f"{prefix}:{{{shop}}}:outbox")) for shop in shops]


def _metric(service: Service, type_: str, cause: str) -> float:
    text = service.metrics.render().decode()
    line = f'fenliu_outputs_undelivered_total{{cause="{cause}",type="{type_}"}}'
    return float(next(x for x in text.splitlines() if x.startswith(line)).split()[-1])


async def _online(*wires: Wire) -> None:
    for wire in wires:
        await wire.status("a1", "online")


@pytest.mark.timeout(90)
async def test_an_output_too_large_to_send_sets_only_its_shop_aside(
    broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    """With the output limit between a short and a long assignment: the shop whose
    assignment is too large is quarantined, its assignment never reaches Kafka; a dead
    letter too large is dropped and its shop goes on; the instance stays ready."""
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=1)
    shops = {s: SHOP.format(id=s) for s in ("big", "good")}
    path = write_config(
        tmp_path, bootstrap=broker.bootstrap, redis_url=redis_url, topics=topics, shops=shops
    )
    service = Service(load_config(path), install_signals=False)
    service.intake.max_output_bytes = limit = _assignment_bytes("good", "g1") + 60
    assert _assignment_bytes("big", LONG_BUYER) > limit + 60
    running = asyncio.create_task(service.run())
    try:
        await until(lambda: service.ready, 30, "ready")
        async with (
            Wire(broker.bootstrap, topics, "big") as big,
            Wire(broker.bootstrap, topics, "good") as good,
        ):
            await _online(big, good)
            await good.inquiry("g1")
            await good.assignment("g1")
            await big.inquiry(LONG_BUYER)
            await until(lambda: "big" in service.checkpoint.held.quarantined, 15, "quarantined")
            assert "over the" in service.checkpoint.held.quarantined["big"].cause
            await good.send(topics.inquiries, b"x" * 2000)  # its dead letter is too large
            await good.inquiry("g2")
            await good.assignment("g2")
            assert _metric(service, "rejected", "oversized") == 1
            assert _metric(service, "assignment", "oversized") == 1
            assert "good" not in service.checkpoint.held.set_aside
            await big.settle(1.0)
            assert not [e for e in big.seen if e["type"] == "assignment"]
            await until(lambda: service.ready, 10, "ready again")  # the other shop keeps it
    finally:
        service.request_stop()
        assert await running == 0


def _refusing_producer(authorization_refused: str) -> Any:
    """`make_producer` for a broker that refuses (TopicAuthorizationFailedError, at the
    acknowledgement) the assignments of one shop, and a producer whose requests take a
    short assignment but not a long one (MessageSizeTooLargeError when it is handed over)."""
    max_request_size = _assignment_bytes("good", "g1") + 120
    assert _assignment_bytes("big", LONG_BUYER) > max_request_size

    class Refusing(AIOKafkaProducer):  # type: ignore[misc]  # aiokafka is untyped
        async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
            if key == authorization_refused.encode() and b'"assignment"' in value:
                refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                refused.set_exception(TopicAuthorizationFailedError(topic))
                return refused
            return await super().send(topic, value, key)

    def make(kafka: KafkaConfig, security: dict[str, Any]) -> Refusing:
        return Refusing(
            bootstrap_servers=kafka.bootstrap_servers, linger_ms=0, acks="all",
            enable_idempotence=False, max_request_size=max_request_size, **security,
        )  # fmt: skip

    return make


@pytest.mark.timeout(120)
async def test_outputs_kafka_refuses_for_good_set_only_their_shop_aside_and_leave_the_outbox(
    broker: Broker, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One shop's assignment refused when it is handed over (too large for the producer's
    requests), another's when Kafka answers (not authorized): both shops are set aside,
    counted, logged; a third shop goes on, the instance stays ready, both outboxes are
    empty in Redis, and a restart serves all three with no refusal inherited."""
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=1)
    shops = {s: SHOP.format(id=s) for s in ("big", "acl", "good")}
    path = write_config(
        tmp_path, bootstrap=broker.bootstrap, redis_url=redis_url, topics=topics, shops=shops
    )
    monkeypatch.setattr(startup_module, "make_producer", _refusing_producer("acl"))
    service = Service(load_config(path), install_signals=False)
    running = asyncio.create_task(service.run())
    try:
        await until(lambda: service.ready, 30, "ready")
        async with (
            Wire(broker.bootstrap, topics, "big") as big,
            Wire(broker.bootstrap, topics, "acl") as acl,
            Wire(broker.bootstrap, topics, "good") as good,
        ):
            await _online(big, acl, good)
            await big.inquiry(LONG_BUYER)
            await acl.inquiry("c1")
            await good.inquiry("g1")
            await good.assignment("g1")
            quarantined = service.checkpoint.held.quarantined
            await until(lambda: {"big", "acl"} <= set(quarantined), 15, "both set aside")
            assert "MessageSizeTooLargeError" in service.checkpoint.held.quarantined["big"].cause
            assert (
                "TopicAuthorizationFailedError" in service.checkpoint.held.quarantined["acl"].cause
            )
            assert _metric(service, "assignment", "refused") == 2
            await good.inquiry("g2")
            await good.assignment("g2")
            await until(lambda: service.ready, 10, "ready")
            await until(
                lambda: _outbox_lengths(redis_url, topics, ["big", "acl"]) == [0, 0], 10,
                "the refused outputs gone from the outboxes",
            )  # fmt: skip
    finally:
        service.request_stop()
        assert await running == 0

    monkeypatch.undo()  # the restart: the real producer, nothing refused any more
    again = Service(load_config(path), install_signals=False)
    running = asyncio.create_task(again.run())
    try:
        await until(lambda: again.ready, 30, "ready again")
        assert not again.checkpoint.held.set_aside
        assert _metric(again, "assignment", "refused") == 0
        async with Wire(broker.bootstrap, topics, "acl") as acl:
            await acl.inquiry("c2")
            assert (await acl.assignment("c2"))["agent_id"] == "a1"
    finally:
        again.request_stop()
        assert await running == 0
