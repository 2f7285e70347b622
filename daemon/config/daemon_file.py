"""`fenliu.toml`'s tables as frozen pydantic models (docs/contract.md §5): `[kafka]` with
`[kafka.topics]`, `[redis]`, `[http]`, `[shops]`, and `FenliuConfig`, what the daemon runs with.

Field validators word their own problems (a bad host:port, topic name or Redis URL, an unset
environment variable); `kafka_problems` cross-checks `[kafka]` settings against each other.
Reading the files and wording pydantic's errors is in daemon.config.files. Every setting
that may hold a secret (`redis.url`, `kafka.sasl_password`, `kafka.ssl_password`,
`http.token`) expands `${NAME}` from the environment (daemon.config.secrets) and stays out
of every str, repr and dump: the passwords and token are SecretStr, and `redis.url` shows
and dumps as `redacted_url`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    ValidationInfo,
    field_serializer,
    field_validator,
)

from daemon.config.secrets import expand_env, redact_url
from daemon.core.config import DurationMs, ShopConfig

__all__ = [
    "DaemonFile",
    "FenliuConfig",
    "HttpConfig",
    "KafkaConfig",
    "RedisConfig",
    "ShopsConfig",
    "TopicsConfig",
    "kafka_problems",
]


def _host_port(text: str, *, lowest_port: int = 1) -> str:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not lowest_port <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not host:port, e.g. '127.0.0.1:9092' or '[::1]:9092'")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"{text!r}: an IPv6 address goes in brackets, e.g. '[::1]:9092'")
    return text


def _servers(text: str) -> str:
    for server in text.split(","):
        _host_port(server.strip())
    return text


def _topic(name: str) -> str:
    legal = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not name or len(name) > 249 or not set(name) <= legal or name in {".", ".."}:
        raise ValueError(f"{name!r} is not a Kafka topic name: letters, digits, '.', '_', '-'")
    return name


TopicName = Annotated[str, AfterValidator(_topic)]


def _expand_name(text: str | None) -> str | None:
    """A name with `${NAME}` (or `$NAME`) from the environment; empty means None."""
    return (expand_env(text, bare=True) or None) if text is not None else None


def _expand_secret(value: object) -> object:
    """A secret setting's text with `${NAME}` from the environment (before validation:
    anything else is left for the type to refuse)."""
    return expand_env(value) if isinstance(value, str) else value


Secret = Annotated[SecretStr, BeforeValidator(_expand_secret)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class TopicsConfig(_Frozen):
    """`[kafka.topics]`: the six topic names (contract §1)."""

    inquiries: TopicName = "fenliu.inquiries"
    messages: TopicName = "fenliu.messages"
    agent_status: TopicName = "fenliu.agent-status"
    assignments: TopicName = "fenliu.assignments"
    queue_updates: TopicName = "fenliu.queue-updates"
    dead_letter: TopicName = "fenliu.dead-letter"


class KafkaConfig(_Frozen):
    """`[kafka]`: the brokers and how to reach them (cross-checked by `kafka_problems`)."""

    bootstrap_servers: Annotated[str, AfterValidator(_servers)]  # "host:port,host:port"
    group_id: str = Field(default="fenliu", min_length=1)
    client_id: str | None = Field(default=None, min_length=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = None
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    # TLS (SSL, SASL_SSL): the CA to trust, and a client certificate if the brokers ask for
    # one (its key in ssl_keyfile or in the same file, encrypted with ssl_password); paths
    # relative to fenliu.toml's folder, absolute once loaded
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: Secret | None = None
    # group membership: a dead instance's partitions move after `session_timeout`; a
    # non-empty `group_instance_id` is static membership (KIP-345), "${VAR}" expanded
    session_timeout: Annotated[DurationMs, Field(ge=1000, le=300_000)] = 6000
    group_instance_id: Annotated[str | None, AfterValidator(_expand_name)] = None
    # send LeaveGroup when stopping, so the group rebalances at once (false: the group
    # notices after session_timeout; for brokers where a leave during a rebalance can
    # stall the group, such as Tansu 0.6 — docs/daemon.md, "Running a fleet")
    leave_group: bool = True
    topics: TopicsConfig = TopicsConfig()


KAFKA_TLS_SETTINGS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password")
KAFKA_TLS_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
REDIS_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")  # query arguments of the URL


def kafka_problems(kafka: KafkaConfig) -> list[tuple[str, str]]:
    """Settings of `[kafka]` that contradict each other, as (key under kafka, problem)."""
    problems: list[tuple[str, str]] = []
    proto = kafka.security_protocol or "PLAINTEXT"
    for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
        if proto.startswith("SASL_") and getattr(kafka, name) is None:
            problems.append((name, f"is required with security_protocol = {proto!r}"))
        elif not proto.startswith("SASL_") and getattr(kafka, name) is not None:
            problems.append((name, "is only used with security_protocol SASL_PLAINTEXT/SASL_SSL"))
    if proto not in {"SSL", "SASL_SSL"}:
        tls = [name for name in KAFKA_TLS_SETTINGS if getattr(kafka, name) is not None]
        problems += [(n, "is only used with security_protocol SSL or SASL_SSL") for n in tls]
    if kafka.ssl_certfile is None:
        keys = [name for name in ("ssl_keyfile", "ssl_password") if getattr(kafka, name)]
        problems += [(n, "belongs to a client certificate: set ssl_certfile too") for n in keys]
    seen: dict[str, str] = {}
    for name, topic in kafka.topics:
        if topic in seen:
            problems.append((f"topics.{name}", f"{topic!r} is already the {seen[topic]} topic"))
        seen.setdefault(topic, name)
    return problems


class RedisConfig(_Frozen):
    """`[redis]`: where routing state is checkpointed. `url` may hold a password: print
    `redacted_url`, never `url` (repr and dumps show the redacted one). TLS is `rediss://`,
    with redis-py's query arguments: `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` (files,
    relative to fenliu.toml's folder, absolute once loaded), `ssl_password`, ..."""

    url: Annotated[str, BeforeValidator(_expand_secret)] = Field(repr=False)
    key_prefix: str = Field(default="fenliu", min_length=1)
    cluster: bool = False  # `url` names one node of a Redis Cluster

    @field_validator("url")
    @classmethod
    def _redis_url(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        try:
            urlsplit(url).port  # noqa: B018 - parses the port, raising on garbage
        except ValueError:
            raise ValueError("is not a valid URL (check the host and port)") from None
        tls = [name for name, _ in _query(url) if name.startswith("ssl_")]
        if tls and not url.startswith("rediss://"):
            raise ValueError(f"{tls[0]} is only used with TLS: the URL must start with rediss://")
        return url

    @field_serializer("url")
    def _dump_redacted(self, url: str) -> str:
        return redact_url(url)

    @property
    def tls_files(self) -> dict[str, str]:
        """The files the URL names (`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`), by
        query argument."""
        return {name: value for name, value in _query(self.url) if name in REDIS_TLS_FILES}

    def files_under(self, base: Path) -> RedisConfig:
        """This configuration with the URL's relative TLS file paths made absolute under
        `base` (fenliu.toml's folder)."""
        url, mark, query = self.url.partition("?")
        args = []
        for arg in query.split("&") if mark else ():
            name, _, value = arg.partition("=")
            absolute = quote(str(base / unquote(value)), safe="/")
            args.append(f"{name}={absolute}" if unquote(name) in REDIS_TLS_FILES else arg)
        return self.model_copy(update={"url": url + mark + "&".join(args)})

    @field_validator("key_prefix")
    @classmethod
    def _no_braces(cls, prefix: str) -> str:
        if set(prefix) & set("{} \t\n"):
            raise ValueError("must not contain spaces, '{' or '}' ({shop_id} is the hash tag)")
        return prefix

    @property
    def redacted_url(self) -> str:
        """The URL with its credentials replaced by ``***`` (the user info's password, query
        arguments named like secrets: daemon.config.secrets): safe to log or print."""
        return redact_url(self.url)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "url", self.redacted_url
        yield from super().__repr_args__()


def _query(url: str) -> list[tuple[str, str]]:
    """A URL's query arguments (name, value), unquoted, in order."""
    query = url.partition("?")[2]
    pairs = (arg.partition("=") for arg in query.split("&") if arg)
    return [(unquote(name), unquote(value)) for name, _, value in pairs]


def is_loopback_host(host: str) -> bool:
    """Whether `host` (no brackets) names this machine only: localhost, 127.0.0.0/8, ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, or "" (every address)


class HttpConfig(_Frozen):
    """`[http]`: where the metrics, probes, JSON API and console listen (port 0: any free
    port), and the token /api/* and the console need (required off loopback). The token
    stays out of every str and repr (SecretStr), and problems never quote it."""

    listen: Annotated[str, AfterValidator(lambda t: _host_port(t, lowest_port=0))] = (
        "127.0.0.1:9464"
    )
    token: Secret = Field(default=SecretStr(""), validate_default=True)
    # /metrics: per-agent series too (fenliu_agent_open_sessions, fenliu_agent_pending);
    # off, each shop's agents are summed (fenliu_shop_*): ~8 series a shop instead of ~20
    per_agent_metrics: StrictBool = False

    @field_validator("token")
    @classmethod
    def _token_off_loopback(cls, token: SecretStr, info: ValidationInfo) -> SecretStr:
        listen = info.data.get("listen")  # absent when listen itself was wrong
        host = listen.rpartition(":")[0].strip("[]") if isinstance(listen, str) else None
        if host is not None and not token.get_secret_value() and not is_loopback_host(host):
            raise ValueError(
                f"is required when listen ({listen!r}) is not a loopback address: without it "
                "/api/* and the console are open to anyone who can reach the port"
            )
        return token

    @property
    def host(self) -> str:
        """The address to bind, without IPv6 brackets."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The TCP port to bind."""
        return int(self.listen.rpartition(":")[2])


class ShopsConfig(_Frozen):
    """`[shops]`: the folder whose every ``*.toml`` file is one shop, and whether the daemon
    watches it (and fenliu.toml) to reload by itself."""

    dir: Path = Path("shops")  # relative to fenliu.toml's folder; absolute once loaded
    watch: Annotated[DurationMs, Field(ge=0, le=3_600_000)] = 0  # how often to look; 0: off

    @field_validator("watch")
    @classmethod
    def _watch_at_least_a_second(cls, value: int) -> int:
        if 0 < value < 1000:
            raise ValueError('at least "1s", or 0 to turn watching off')
        return value


class DaemonFile(_Frozen):
    """`fenliu.toml` as written: its four tables."""

    kafka: KafkaConfig
    redis: RedisConfig
    http: HttpConfig = HttpConfig()
    shops: ShopsConfig = ShopsConfig()


class FenliuConfig(DaemonFile):
    """Everything the daemon runs with: `fenliu.toml` (paths absolute) and every shop."""

    config_path: Path
    shop_configs: dict[str, ShopConfig]  # by shop id, in shop file name order
    shop_files: dict[str, Path]  # by shop id: the file it came from
