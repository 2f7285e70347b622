"""What `/readyz` and the lag metric read from the clients (docs/daemon.md, Readiness).

The service is ready while it holds restored partitions, nothing has failed since the last
restore (both the service's own state), Redis answered a `PING` within the last two seconds
(`redis_answers`) and every owned partition was fetched within KAFKA_STALE_MS
(`partitions_fresh`). `consumer_lag` is `fenliu_consumer_lag{partition}` at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from daemon.service.store import Store, StoreError

KAFKA_STALE_MS = 3000  # an owned partition not fetched for this long: not ready


def partitions_fresh(consumer: AIOKafkaConsumer, owned: Iterable[TopicPartition]) -> bool:
    """Every owned partition still assigned was fetched within KAFKA_STALE_MS."""
    stale = time.time() * 1000 - KAFKA_STALE_MS
    for tp in owned:
        polled = consumer.last_poll_timestamp(tp) if tp in consumer.assignment() else None
        if polled is not None and polled < stale:
            return False
    return True


async def redis_answers(store: Store | None, *, was_ok: bool, log: Any) -> bool:
    """Whether Redis answers a PING (`redis_unreachable` logged when it stops answering,
    `redis_tls_failed` when the TLS handshake fails: a certificate not trusted, say)."""
    assert store is not None
    try:
        await store.ping()
    except StoreError as exc:
        if was_ok:
            log.warning("redis_tls_failed" if exc.tls else "redis_unreachable", error=str(exc))
        return False
    return True


def consumer_lag(
    consumer: AIOKafkaConsumer | None, positions: Mapping[TopicPartition, int]
) -> dict[str, int]:
    """Per assigned "topic/partition": records between the service's position and the end."""
    if consumer is None:
        return {}
    lag: dict[str, int] = {}
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is not None:
            lag[f"{tp.topic}/{tp.partition}"] = max(0, high - positions.get(tp, 0))
    return lag
