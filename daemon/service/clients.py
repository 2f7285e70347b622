"""The daemon's Kafka and Redis clients, as `fenliu run` configures, checks and closes them.

`kafka_client_kwargs` turns `[kafka]` into the keyword arguments of aiokafka's consumer,
producer and admin clients (the daemon passes the same ones to all three; so does `fenliu
topics create`). `partition_counts` reads partition counts without ever creating a topic (a
plain metadata request would auto-create it on brokers that allow that, Tansu included).
`check_partitions` runs before any consumer connects: the three input topics must exist and
share a partition count (a shop's events share a partition number on every topic). Topics
that do not exist yet are waited for (`TopicsMissingError`, daemon.service.startup); topics
that disagree are a configuration error, and the service refuses to start (`StartupError`).
`close_within` gives each client at most CLOSE_TIMEOUT_S to close, so SIGTERM exits within
10 s even while Kafka or Redis is away.

Errors of the metadata and admin calls (library errors are translated here, by
`kafka_errors`, ``raise ... from exc``), and of the start-up check::

    TopicsAdminError          the broker refused something (names the topic and the error)
     └── KafkaUnreachableError   no answer from the bootstrap servers in time
    TopicsMissingError        input topics that do not exist (yet): start-up waits
    StartupError              the input topics disagree: start-up refuses (exit 2)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from daemon.config import KafkaConfig, RedisConfig
from daemon.service.kafka import CoPartitionAssignor

TIMEOUT_S = 10.0  # each metadata or admin call gives up after this long without an answer
REQUEST_TIMEOUT_MS = 5_000
FETCH_MAX_WAIT_MS = 10  # some brokers (Tansu) hold a fetch this long even when data is there
CLOSE_TIMEOUT_S = 1.5  # per client closed at the end (SIGTERM to exit within 10 s)
MAX_REQUEST_BYTES = 1_048_576  # the producer's max_request_size: aiokafka's default
RECORD_HEADROOM = 1_024  # a record batch's and a record's own headers, with room to spare
MAX_OUTPUT_BYTES = MAX_REQUEST_BYTES - RECORD_HEADROOM  # key + value of one output record
_NO_ERROR = 0
_UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION
_LEADER_NOT_AVAILABLE = 5  # a topic created a moment ago: its partitions are listed already


class StartupError(RuntimeError):
    """The service cannot start (a configuration error); the message says why and what to do."""


class TopicsMissingError(Exception):
    """Input topics that do not exist (yet); `missing` names them."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"input topics {missing} do not exist")
        self.missing = missing


class TopicsAdminError(Exception):
    """The broker refused a topic request."""


class KafkaUnreachableError(TopicsAdminError):
    """The bootstrap servers did not answer in time."""


def kafka_client_kwargs(kafka: KafkaConfig) -> dict[str, object]:
    """aiokafka keyword arguments for `[kafka]`'s client id, security protocol, SASL and TLS.

    The result holds the SASL password in clear text (aiokafka needs it): never log it.
    TLS: `ssl_cafile` (the system CAs without one) and the client certificate, if any, in
    one `ssl.SSLContext` (aiokafka's `create_ssl_context`).
    """
    kwargs: dict[str, object] = {}
    if kafka.client_id is not None:
        kwargs["client_id"] = kafka.client_id
    protocol = kafka.security_protocol or "PLAINTEXT"
    kwargs["security_protocol"] = protocol
    if protocol in {"SSL", "SASL_SSL"}:
        key_password = kafka.ssl_password.get_secret_value() if kafka.ssl_password else None
        kwargs["ssl_context"] = create_ssl_context(
            cafile=_text(kafka.ssl_cafile),
            certfile=_text(kafka.ssl_certfile),
            keyfile=_text(kafka.ssl_keyfile),
            password=key_password or None,
        )
    if protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        password = kafka.sasl_password
        kwargs["sasl_plain_password"] = password.get_secret_value() if password else None
    return kwargs


def _text(path: object) -> str | None:
    return str(path) if path is not None else None


@asynccontextmanager
async def kafka_errors(bootstrap: str, doing: str) -> AsyncIterator[None]:
    """Give the calls within at most TIMEOUT_S and translate aiokafka's errors: a timeout or
    a refused connection as KafkaUnreachableError, any other KafkaError as TopicsAdminError
    saying what was being done (`doing`, "creating topics on HOST:PORT")."""
    try:
        async with asyncio.timeout(TIMEOUT_S):
            yield
    except TimeoutError as exc:
        text = f"Kafka at {bootstrap} did not answer within {TIMEOUT_S:g} s"
        raise KafkaUnreachableError(text) from exc
    except KafkaConnectionError as exc:
        raise KafkaUnreachableError(f"cannot connect to Kafka at {bootstrap}") from exc
    except KafkaError as exc:
        raise TopicsAdminError(f"{doing}: {exc}") from exc


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
        bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS, **(security or {})
    )
    try:
        async with kafka_errors(bootstrap, f"reading topic metadata from {bootstrap}"):
            response = await _metadata(client, wanted)
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


async def check_partitions(
    bootstrap_servers: str, inputs: list[str], security: dict[str, Any]
) -> None:
    """Return if every input topic exists, all with the same partition count.

    Raises StartupError if the topics that exist have different counts (a configuration
    error: creating the missing ones would not mend it), else TopicsMissingError if some do
    not exist; the errors of `partition_counts` (TopicsAdminError, KafkaUnreachableError)
    pass through. daemon.service.startup says which of these start-up waits out.
    """
    counts = await partition_counts(bootstrap_servers, inputs, security)
    counts = {name: n for name, n in counts.items() if n}  # none listed yet: being created
    if len(set(counts.values())) > 1:
        raise StartupError(
            f"input topics must have the same partition count (a shop's events must share "
            f"a partition number on every topic); found {counts}"
        )
    missing = [name for name in inputs if name not in counts]
    if missing:
        raise TopicsMissingError(missing)


def make_consumer(kafka: KafkaConfig, security: dict[str, Any]) -> AIOKafkaConsumer:
    """Auto-commit off (positions live in Redis), co-partitioned assignment, short waits.

    The fetch sizes stay aiokafka's (`max_partition_fetch_bytes` 1 MiB, `fetch_max_bytes`
    50 MiB): a broker returns a first record batch larger than them whole (KIP-74; Tansu
    too), so a record of any size the broker took is consumed, and then dead-lettered.
    """
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


def make_producer(kafka: KafkaConfig, security: dict[str, Any]) -> AIOKafkaProducer:
    """No linger, `acks=all`, no idempotence (which Tansu lacks), requests of at most
    MAX_REQUEST_BYTES (the service sizes every output against MAX_OUTPUT_BYTES first).

    A linger would only delay every decision: the loop hands a batch's outputs to the
    producer all at once, before its sender runs, and aiokafka keeps one produce request
    in flight per broker, so what comes meanwhile waits and goes in the next request.
    """
    return AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        linger_ms=0,
        acks="all",
        enable_idempotence=False,
        max_request_size=MAX_REQUEST_BYTES,
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
