"""Creating Fenliu's Kafka topics: ``fenliu topics create``.

`create_topics` makes the six topics of contract §1 and is idempotent; `topics_create_command`
is ``fenliu topics create``. The client settings (`kafka_client_kwargs`) and the partition
counts (`partition_counts`, which never creates a topic) are the daemon's own, from
`daemon.service.clients`.

Errors (library errors are translated at this edge by `kafka_errors`, ``raise ... from exc``)::

    TopicsAdminError          the broker refused something (names the topic and the error)
     └── KafkaUnreachableError   no answer from the bootstrap servers in time
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from daemon.config import KafkaConfig, TopicsConfig, load_config_or_report
from daemon.service.clients import (
    REQUEST_TIMEOUT_MS,
    KafkaUnreachableError,
    TopicsAdminError,
    kafka_client_kwargs,
    kafka_errors,
    partition_counts,
)

__all__ = [
    "KafkaUnreachableError",
    "TopicsAdminError",
    "create_topics",
    "topics_create_command",
]

_NO_ERROR = 0
_TOPIC_ALREADY_EXISTS = 36


async def create_topics(
    bootstrap: str,
    topics: TopicsConfig,
    *,
    partitions: int = 4,
    replication_factor: int = 1,
    security: Mapping[str, object] | None = None,
) -> list[str]:
    """Create the six topics, each with `partitions` partitions; return the names created.

    Topics that exist already are left as they are (whatever their partition count). Gives
    up after `TIMEOUT_S`; wrap the call in `asyncio.timeout` for a shorter deadline.
    """
    if partitions < 1 or replication_factor < 1:
        raise ValueError("partitions and replication_factor must be at least 1")
    names = [name for _, name in topics]
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS, **(security or {})
    )
    try:
        async with kafka_errors(bootstrap, f"creating topics on {bootstrap}"):
            await admin.start()
            response = await admin.create_topics(
                [NewTopic(name, partitions, replication_factor) for name in names]
            )
    finally:
        await admin.close()
    created: set[str] = set()
    for name, code, *message in response.topic_errors:  # v0 has no message
        if code == _NO_ERROR:
            created.add(name)
        elif code != _TOPIC_ALREADY_EXISTS:
            error = for_code(code)
            why = (message[0] if message else None) or error.description
            raise TopicsAdminError(f"cannot create topic {name!r}: {error.message}: {why}")
    return [name for name in names if name in created]


# --- fenliu topics create --------------------------------------------------------------------


async def _create_and_count(
    kafka: KafkaConfig, partitions: int, replication_factor: int
) -> tuple[list[str], dict[str, int]]:
    security = kafka_client_kwargs(kafka)
    created = await create_topics(
        kafka.bootstrap_servers,
        kafka.topics,
        partitions=partitions,
        replication_factor=replication_factor,
        security=security,
    )
    names = [name for _, name in kafka.topics]
    counts = await partition_counts(kafka.bootstrap_servers, names, security)
    return created, counts


def topics_create_command(
    config_path: Path,
    *,
    partitions: int = 4,
    replication_factor: int = 1,
) -> int:
    """`fenliu topics create`: one line per topic (created or exists) and 0; or a one-line
    error on stderr and 1 (bad configuration, Kafka unreachable, a topic refused, or input
    topics whose partition counts differ, which the daemon would refuse to start with)."""
    config = load_config_or_report(config_path)
    if config is None:
        return 1
    # aiokafka logs connection failures itself; the one line below says it all.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    kafka = config.kafka
    try:
        created, counts = asyncio.run(_create_and_count(kafka, partitions, replication_factor))
    except TopicsAdminError as exc:
        print(f"fenliu topics create: {exc}", file=sys.stderr)
        return 1
    for _, name in kafka.topics:
        state = "created" if name in created else "exists "
        count = counts.get(name, partitions)
        print(f"{state} {name} ({count} partition{'' if count == 1 else 's'})")
    inputs = {name: counts.get(name) for name in _input_topics(kafka.topics)}
    if len(set(inputs.values())) > 1:
        print(
            f"fenliu topics create: input topics have different partition counts {inputs}; "
            "the daemon needs them equal (a shop's events share a partition number)",
            file=sys.stderr,
        )
        return 1
    return 0


def _input_topics(topics: TopicsConfig) -> list[str]:
    return [topics.inquiries, topics.messages, topics.agent_status]
