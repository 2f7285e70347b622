"""The aiokafka internals the service uses (daemon.service.aiokafka_compat) are all in the
installed aiokafka, with the signatures the service calls them with; an aiokafka without one
fails here, naming it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.group_coordinator import GroupCoordinator

from daemon.service.aiokafka_compat import missing_internals


@pytest.fixture
async def consumer() -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer constructed, never started (it connects to nothing)."""
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", group_id="compat")
    try:
        yield consumer
    finally:
        await consumer.stop()


async def test_the_installed_aiokafka_has_every_internal_the_service_uses(
    consumer: AIOKafkaConsumer,
) -> None:
    missing = missing_internals(consumer)
    assert missing == [], f"aiokafka internals gone or changed: {missing}"


async def test_an_aiokafka_without_one_is_named(
    consumer: AIOKafkaConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check reads the real classes: take an internal away and it says which."""
    monkeypatch.delattr(GroupCoordinator, "_maybe_leave_group")
    monkeypatch.delattr(consumer, "_coordinator")
    missing = missing_internals(consumer)
    assert "GroupCoordinator._maybe_leave_group (method)" in missing
    assert "AIOKafkaConsumer._coordinator (instance attribute)" in missing
