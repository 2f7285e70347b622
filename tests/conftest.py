"""Real infrastructure for integration tests: a Kafka-protocol broker and a Redis.

Both are started lazily, once per session, on free loopback ports, and only if a test asks
for them. Under pytest-xdist (`make test` runs `pytest -n`) a session is one worker, so
every worker has processes of its own and tests of different workers never meet. Tests never
share data: `redis_url` empties the Redis before each test, and `fresh_topics` gives each
test its own six topics (names prefixed with a random id) on the shared broker. A daemon that
outlives a test (tests/system/conftest.py's module daemon) has a Redis of its own, so no
`redis_url` empties it under its feet. A failing test that used a process gets its log tail
in the report.

Under xdist the unit of work is a module (`--dist loadscope`): its module-scoped fixtures (a
daemon, a runtime-only install) are made once, on the worker that runs all its tests.

Outage tests get processes of their own, per test: `proxied_broker` (a broker reachable only
through a `tests.faultproxy.FaultProxy` they can cut and heal) and `durable_redis` (a Redis
with an append-only file, which they may stop, kill and start again).

The process fixtures are synchronous (pytest-asyncio's loops are per test); async work
happens inside the tests, or here on a private event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Generator, Iterator
from typing import Any, TypeVar

import pytest
import redis

from daemon.config import TopicsConfig
from daemon.dev.stack import Broker, RedisServer
from daemon.tools.topics_admin import create_topics
from tests.faultproxy import ProxiedBroker
from tests.redis_cluster import RedisCluster

T = TypeVar("T")

LOG_LINES = 60
_STARTED: dict[str, Broker | RedisServer] = {}  # by fixture name


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on a private event loop (never touching the current loop); only from
    synchronous code such as a sync fixture: inside a running loop, await it instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coroutine.close()
        raise RuntimeError("run_sync() called inside a running event loop: await it instead")
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def unique_topics(prefix: str | None = None) -> TopicsConfig:
    """Six topic names no other test uses: ``t<hex>.inquiries`` and so on."""
    prefix = prefix or f"t{uuid.uuid4().hex[:12]}"
    return TopicsConfig(**{field: f"{prefix}.{field}" for field in TopicsConfig.model_fields})


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """A Tansu broker (memory storage) for the whole session."""
    with Broker() as process:
        _STARTED["broker"] = process
        yield process
    _STARTED.pop("broker", None)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server for the whole session (tests may stop and restart it)."""
    with RedisServer() as process:
        _STARTED["redis_server"] = process
        yield process
    _STARTED.pop("redis_server", None)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A three-master Redis Cluster (tests/redis_cluster.py) for the whole session."""
    with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        _STARTED["redis_cluster"] = cluster.nodes[0]
        yield cluster
    _STARTED.pop("redis_cluster", None)


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster) -> str:
    """The session cluster's first node, every node running and empty at the start of the test."""
    for node in redis_cluster.nodes:
        node.start()  # a no-op unless an earlier test left it stopped
    redis_cluster.wait_ok()
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis's URL, running and empty (FLUSHALL) at the start of the test."""
    redis_server.start()  # a no-op unless an earlier test left it stopped
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def fresh_topics(broker: Broker) -> TopicsConfig:
    """Six new topics of 4 partitions each on the session broker, named for this test only."""
    topics = unique_topics()
    run_sync(create_topics(broker.bootstrap, topics, partitions=4))
    return topics


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist (`--dist loadscope --no-loadscope-reorder`: a module is a unit of work,
    handed out in this order) the longest modules start first, so that none of them is what
    the other workers wait for at the end: `slow` ones, then the `e2e` ones, then the rest."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: (not item.get_closest_marker("slow"),
                                     not item.get_closest_marker("e2e")))  # fmt: skip


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log tail of every process a failing test used to its report."""
    report = yield
    if report.failed:
        used = getattr(item, "fixturenames", ())
        for name, process in _STARTED.items():
            if name in used:
                title = f"{process.name} log, last {LOG_LINES} lines of {process.log_path}"
                report.sections.append((title, process.log_tail(LOG_LINES)))
    return report


# --- outage tests: a broker whose connections can be cut, a Redis that keeps its data --------


@pytest.fixture
def proxied_broker() -> Iterator[ProxiedBroker]:
    """A Tansu broker of this test's own (it starts in about 0.1 s) behind a `FaultProxy`.

    Clients use `.bootstrap` (the proxy's address); the broker advertises the proxy's port,
    so every connection passes through it and `.proxy.cut()` / `.proxy.heal()` reach them all.
    Do not stop `.broker` to simulate an outage: Tansu keeps its data in memory only.
    """
    stack = ProxiedBroker.start()
    _STARTED["proxied_broker"] = stack.broker
    try:
        yield stack
    finally:
        _STARTED.pop("proxied_broker", None)
        stack.stop()


@pytest.fixture
def durable_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this test's own with ``appendfsync always``: the test may `stop()`
    (or `kill()`) and `start()` it, and it comes back on the same port with every write."""
    folder = tmp_path_factory.mktemp("durable-redis")
    with RedisServer(appendfsync="always", log_dir=folder) as server:
        _STARTED["durable_redis"] = server
        try:
            yield server
        finally:
            _STARTED.pop("durable_redis", None)
