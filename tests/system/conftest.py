"""The module daemon: one real `fenliu run` process for a whole test module, against the
session's broker and a Redis of its own, serving the shops the module declares in `SHOPS`
(shop id -> shop file text). Its tests work in shops of their own, so they do not disturb
each other; tests that stop or reconfigure a daemon start their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from daemon.config import TopicsConfig
from daemon.dev.stack import Broker, RedisServer
from daemon.tools.topics_admin import create_topics
from tests.conftest import run_sync, unique_topics
from tests.e2e import DaemonProcess, write_config


@pytest.fixture(scope="module")
def topics(broker: Broker) -> TopicsConfig:
    """Six new topics of 4 partitions for the module's daemon."""
    fresh = unique_topics()
    run_sync(create_topics(broker.bootstrap, fresh, partitions=4))
    return fresh


@pytest.fixture(scope="module")
def daemon(
    broker: Broker,
    topics: TopicsConfig,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaemonProcess]:
    """`fenliu run` serving the module's `SHOPS`, ready; stopped (exit 0) after the module.

    Its Redis is its own: the module's other tests empty the session's (`redis_url`)."""
    shops: dict[str, str] = request.module.SHOPS
    folder = tmp_path_factory.mktemp("e2e")
    with RedisServer(log_dir=folder) as redis_server:
        config = write_config(
            folder, bootstrap=broker.bootstrap, redis_url=redis_server.url, topics=topics,
            shops=shops,
        )  # fmt: skip
        process = DaemonProcess(config).start()
        yield process
        code, _ = process.stop()
    assert code == 0, process.log_tail()
