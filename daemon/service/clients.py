"""The daemon's Kafka and Redis clients, as `fenliu run` configures, checks and closes them.

`check_partitions` runs before any consumer connects: the three input topics must exist and
share a partition count (a shop's events share a partition number on every topic), or the
service refuses to start (`StartupError`). `close_within` gives each client at most
CLOSE_TIMEOUT_S to close, so SIGTERM exits within 10 s even while Kafka or Redis is away.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from daemon.config import KafkaConfig, RedisConfig
from daemon.service.kafka import CoPartitionAssignor
from daemon.tools.topics_admin import partition_counts

FETCH_MAX_WAIT_MS = 10  # some brokers (Tansu) hold a fetch this long even when data is there
CLOSE_TIMEOUT_S = 1.5  # per client closed at the end (SIGTERM to exit within 10 s)


class StartupError(RuntimeError):
    """The service cannot start; the message says why and what to do."""


async def check_partitions(
    bootstrap_servers: str, inputs: list[str], security: dict[str, Any]
) -> None:
    """Refuse (StartupError) unless every input topic exists with the same partition count."""
    try:
        counts = await partition_counts(bootstrap_servers, inputs, security)
    except Exception as exc:
        raise StartupError(f"cannot reach Kafka to inspect the input topics: {exc}") from exc
    missing = [name for name in inputs if not counts.get(name)]
    if missing:
        raise StartupError(
            f"input topics {missing} do not exist; create them with "
            "`fenliu topics create --config FILE`"
        )
    if len({counts[name] for name in inputs}) > 1:
        raise StartupError(
            f"input topics must have the same partition count (a shop's events must share "
            f"a partition number on every topic); found {counts}"
        )


def make_consumer(kafka: KafkaConfig, security: dict[str, Any]) -> AIOKafkaConsumer:
    """Auto-commit off (positions live in Redis), co-partitioned assignment, short waits."""
    return AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=kafka.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        partition_assignment_strategy=(CoPartitionAssignor,),
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        session_timeout_ms=kafka.session_timeout,
        heartbeat_interval_ms=kafka.session_timeout // 3,
        group_instance_id=kafka.group_instance_id,
        **security,
    )


def request_rejoin(consumer: AIOKafkaConsumer) -> None:
    """Ask the group coordinator for a rebalance (aiokafka has no public call for it)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None:
        coordinator.request_rejoin()


def skip_leave_group(consumer: AIOKafkaConsumer) -> None:
    """Stop without LeaveGroup (`[kafka] leave_group = false`): the group drops this member
    after its session timeout instead. aiokafka has no public switch for it."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None:
        return

    async def stay() -> None:
        coordinator.reset_generation()

    coordinator._maybe_leave_group = stay


def make_producer(kafka: KafkaConfig, security: dict[str, Any]) -> AIOKafkaProducer:
    """Linger 5 ms, `acks=all`, no idempotence (which Tansu lacks)."""
    return AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        linger_ms=5,
        acks="all",
        enable_idempotence=False,
        **security,
    )


def make_redis(config: RedisConfig) -> aioredis.Redis | RedisCluster:
    """A client that gives up quickly, so an outage is noticed and retried by the service;
    with `cluster`, redis-py's cluster client (it follows slots, MOVED and ASK)."""
    if config.cluster:
        return RedisCluster.from_url(config.url, socket_timeout=2, socket_connect_timeout=1)
    return aioredis.Redis.from_url(config.url, socket_timeout=2, socket_connect_timeout=1)


async def close_within(closing: Any, what: str, log: Any) -> None:
    """Await `closing` for at most CLOSE_TIMEOUT_S; a failure is logged (`close_failed`)."""
    try:
        await asyncio.wait_for(closing, timeout=CLOSE_TIMEOUT_S)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # we are being cancelled, not just the client's own tasks
        log.warning("close_failed", component=what, error="cancelled")
    except (TimeoutError, OSError, RedisError, KafkaError) as exc:
        log.warning("close_failed", component=what, error=str(exc) or type(exc).__name__)
