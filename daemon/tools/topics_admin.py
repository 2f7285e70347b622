"""Creating and inspecting Fenliu's Kafka topics, and the client settings every client shares.

`kafka_client_kwargs` turns `[kafka]` into the keyword arguments of aiokafka's consumer,
producer and admin clients (the daemon passes the same ones to all three). `create_topics`
makes the six topics of CONTRACT 1 and is idempotent; `partition_counts` reads partition
counts without ever creating a topic (a plain metadata request would auto-create it on
brokers that allow that, Tansu included). `topics_create_command` is ``fenliu topics create``.

Errors (library errors are translated at this edge, ``raise ... from exc``)::

    TopicsAdminError          the broker refused something (names the topic and the error)
     └── KafkaUnreachableError   no answer from the bootstrap servers in time
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest

from daemon.config import ConfigError, KafkaConfig, TopicsConfig, load_config

__all__ = [
    "KafkaUnreachableError",
    "TopicsAdminError",
    "create_topics",
    "kafka_client_kwargs",
    "partition_counts",
    "topics_create_command",
]

TIMEOUT_S = 10.0  # each call gives up after this long without an answer
_REQUEST_TIMEOUT_MS = 5_000
_NO_ERROR = 0
_UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION
_LEADER_NOT_AVAILABLE = 5  # a topic created a moment ago: its partitions are listed already
_TOPIC_ALREADY_EXISTS = 36


class TopicsAdminError(Exception):
    """The broker refused a topic request."""


class KafkaUnreachableError(TopicsAdminError):
    """The bootstrap servers did not answer in time."""


def kafka_client_kwargs(kafka: KafkaConfig) -> dict[str, object]:
    """aiokafka keyword arguments for `[kafka]`'s client id, security protocol, SASL and TLS.

    The result holds the SASL password in clear text (aiokafka needs it): never log it.
    """
    kwargs: dict[str, object] = {}
    if kafka.client_id is not None:
        kwargs["client_id"] = kafka.client_id
    protocol = kafka.security_protocol or "PLAINTEXT"
    kwargs["security_protocol"] = protocol
    if protocol in {"SSL", "SASL_SSL"}:
        cafile = str(kafka.ssl_cafile) if kafka.ssl_cafile is not None else None
        kwargs["ssl_context"] = create_ssl_context(cafile=cafile)  # system CAs without one
    if protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        password = kafka.sasl_password
        kwargs["sasl_plain_password"] = password.get_secret_value() if password else None
    return kwargs


def _unreachable(bootstrap: str, exc: BaseException) -> KafkaUnreachableError:
    if isinstance(exc, TimeoutError):
        return KafkaUnreachableError(f"Kafka at {bootstrap} did not answer within {TIMEOUT_S:g} s")
    return KafkaUnreachableError(f"cannot connect to Kafka at {bootstrap}")


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
        bootstrap_servers=bootstrap, request_timeout_ms=_REQUEST_TIMEOUT_MS, **(security or {})
    )
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await admin.start()
            response = await admin.create_topics(
                [NewTopic(name, partitions, replication_factor) for name in names]
            )
    except (TimeoutError, KafkaConnectionError) as exc:
        raise _unreachable(bootstrap, exc) from exc
    except KafkaError as exc:
        raise TopicsAdminError(f"creating topics on {bootstrap}: {exc}") from exc
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


async def _metadata(client: AIOKafkaClient, names: list[str]) -> Any:
    await client.bootstrap()
    node = client.get_random_node()
    if node is None:
        raise KafkaConnectionError("the cluster metadata lists no broker")
    return await client.send(node, MetadataRequest(names, allow_auto_topic_creation=False))


async def partition_counts(
    bootstrap: str,
    names: Iterable[str],
    security: Mapping[str, object] | None = None,
) -> dict[str, int]:
    """The partition count of each named topic that exists; missing topics are left out.

    Never creates a topic: the metadata request says ``allow_auto_topic_creation=False``.
    Gives up after `TIMEOUT_S`; wrap the call in `asyncio.timeout` for a shorter deadline.
    """
    wanted = list(names)
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap, request_timeout_ms=_REQUEST_TIMEOUT_MS, **(security or {})
    )
    try:
        async with asyncio.timeout(TIMEOUT_S):
            response = await _metadata(client, wanted)
    except (TimeoutError, KafkaConnectionError) as exc:
        raise _unreachable(bootstrap, exc) from exc
    except KafkaError as exc:
        raise TopicsAdminError(f"reading topic metadata from {bootstrap}: {exc}") from exc
    finally:
        await client.close()
    counts: dict[str, int] = {}
    for topic in response.to_object()["topics"]:
        name, code, parts = topic["topic"], topic["error_code"], topic["partitions"]
        if code == _NO_ERROR or (code == _LEADER_NOT_AVAILABLE and parts):
            counts[name] = len(parts)
        elif code != _UNKNOWN_TOPIC:
            raise TopicsAdminError(f"cannot describe topic {name!r}: {for_code(code).message}")
    return {name: counts[name] for name in wanted if name in counts}


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
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
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
