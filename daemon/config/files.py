"""Loading `fenliu.toml` and its folder of shop files (CONTRACT.md section 5).

`load_config` reads everything up front and returns one frozen `FenliuConfig`, or raises
`ConfigError` carrying every problem of every file at once, each a `ConfigProblem` printed
as ``file: key: message`` (keys are dotted TOML paths: ``agents[3].weight``,
``kafka.topics.inquiries``). A caller gets a whole valid configuration or none. What a valid
shop is lives in `daemon.core.config`; this module adds the daemon file's models, reads
TOML and words pydantic's errors for people. Secrets (`kafka.sasl_password`, a password in
`redis.url`) appear neither in the str/repr of the configuration nor in any message.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)

from daemon.config.problems import FILE_KEY, ConfigError, ConfigProblem, validate
from daemon.core.config import (
    AgentConfig,
    DurationMs,
    GroupConfig,
    QueueConfig,
    ShopConfig,
    shop_reference_problems,
)

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "FenliuConfig",
    "check_config_command",
    "load_config",
    "load_shop_file",
]

# --- the daemon file's models ----------------------------------------------------------------


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


def _expand_env(text: str | None) -> str | None:
    """`${NAME}` (or `$NAME`) replaced by the environment's value; empty means None."""
    if text is None:
        return None
    missing = [m.group(1) or m.group(2) for m in _ENV_VAR.finditer(text)]
    missing = [name for name in missing if name not in os.environ]
    if missing:
        raise ValueError(f"uses environment variable {missing[0]}, which is not set")
    expanded = os.path.expandvars(text)
    return expanded or None


_ENV_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class TopicsConfig(_Frozen):
    """`[kafka.topics]`: the six topic names (CONTRACT 1)."""

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
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None  # relative to fenliu.toml's folder; absolute once loaded
    # group membership: a dead instance's partitions move after `session_timeout`; a
    # non-empty `group_instance_id` is static membership (KIP-345), "${VAR}" expanded
    session_timeout: Annotated[DurationMs, Field(ge=1000, le=300_000)] = 6000
    group_instance_id: Annotated[str | None, AfterValidator(_expand_env)] = None
    # send LeaveGroup when stopping, so the group rebalances at once (false: the group
    # notices after session_timeout; for brokers where a leave during a rebalance can
    # stall the group, such as Tansu 0.6 — docs/daemon.md, "Running a fleet")
    leave_group: bool = True
    topics: TopicsConfig = TopicsConfig()


def kafka_problems(kafka: KafkaConfig) -> list[tuple[str, str]]:
    """Settings of `[kafka]` that contradict each other, as (key under kafka, problem)."""
    problems: list[tuple[str, str]] = []
    proto = kafka.security_protocol or "PLAINTEXT"
    for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
        if proto.startswith("SASL_") and getattr(kafka, name) is None:
            problems.append((name, f"is required with security_protocol = {proto!r}"))
        elif not proto.startswith("SASL_") and getattr(kafka, name) is not None:
            problems.append((name, "is only used with security_protocol SASL_PLAINTEXT/SASL_SSL"))
    if kafka.ssl_cafile is not None and proto not in {"SSL", "SASL_SSL"}:
        problems.append(("ssl_cafile", "is only used with security_protocol SSL or SASL_SSL"))
    seen: dict[str, str] = {}
    for name, topic in kafka.topics:
        if topic in seen:
            problems.append((f"topics.{name}", f"{topic!r} is already the {seen[topic]} topic"))
        seen.setdefault(topic, name)
    return problems


class RedisConfig(_Frozen):
    """`[redis]`: where routing state is checkpointed. `url` may hold a password: print
    `redacted_url`, never `url`."""

    url: str = Field(repr=False)
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
        return url

    @field_validator("key_prefix")
    @classmethod
    def _no_braces(cls, prefix: str) -> str:
        if set(prefix) & set("{} \t\n"):
            raise ValueError("must not contain spaces, '{' or '}' ({shop_id} is the hash tag)")
        return prefix

    @property
    def redacted_url(self) -> str:
        """The URL with any password replaced by ``***``: safe to log or print."""
        # Text, not urlsplit: a password holding '/' or '#' must not end up in the host part.
        scheme, _, rest = self.url.partition("://")
        userinfo, at, rest = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        rest, mark, query = rest.partition("?")
        args = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(query, True)]
        hidden = (f"{user}:***@" if colon else "***@") if at else ""
        return f"{scheme}://{hidden}{rest}{mark}{urlencode(args, safe='*')}"

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "url", self.redacted_url
        yield from super().__repr_args__()


class HttpConfig(_Frozen):
    """`[http]`: where `/metrics`, `/healthz`, `/readyz` listen (port 0: any free port)."""

    listen: Annotated[str, AfterValidator(lambda t: _host_port(t, lowest_port=0))] = (
        "127.0.0.1:9464"
    )

    @property
    def host(self) -> str:
        """The address to bind, without IPv6 brackets."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The TCP port to bind."""
        return int(self.listen.rpartition(":")[2])


class ShopsConfig(_Frozen):
    """`[shops]`: the folder whose every ``*.toml`` file is one shop."""

    dir: Path = Path("shops")  # relative to fenliu.toml's folder; absolute once loaded


class _DaemonFile(_Frozen):
    kafka: KafkaConfig
    redis: RedisConfig
    http: HttpConfig = HttpConfig()
    shops: ShopsConfig = ShopsConfig()


class FenliuConfig(_DaemonFile):
    """Everything the daemon runs with: `fenliu.toml` (paths absolute) and every shop."""

    config_path: Path
    shop_configs: dict[str, ShopConfig]  # by shop id, in shop file name order
    shop_files: dict[str, Path]  # by shop id: the file it came from


# --- reading files -------------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any] | ConfigProblem:
    try:
        text = path.read_bytes().decode("utf-8-sig")
        return tomllib.loads(text)
    except FileNotFoundError:
        return ConfigProblem(path, FILE_KEY, "file not found")
    except IsADirectoryError:
        return ConfigProblem(path, FILE_KEY, "is a folder, not a TOML file")
    except OSError as exc:
        return ConfigProblem(path, FILE_KEY, f"cannot be read: {exc.strerror}")
    except UnicodeDecodeError as exc:
        return ConfigProblem(path, FILE_KEY, f"is not UTF-8 text (byte {exc.start})")
    except tomllib.TOMLDecodeError as exc:
        return ConfigProblem(path, FILE_KEY, f"TOML syntax error: {exc}")


def _name(value: object, placeholder: str) -> str:
    # Stands in for a name that failed validation; "\0" keeps it from matching a real name.
    return value if isinstance(value, str) else f"\0{placeholder}"


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _partial_shop(raw: dict[str, Any]) -> ShopConfig:
    """The names in a shop file that failed validation, to check its cross-references too."""
    agents = [_table(t) for t in _list(raw.get("agents"))]
    groups = [_table(t) for t in _list(raw.get("groups"))]
    queue = _table(raw.get("queue"))
    queue_groups = tuple(_name(n, "q") for n in _list(queue.get("groups")))
    scope: Literal["shop", "groups"] = "groups" if queue_groups else "shop"
    if queue.get("scope") in {"shop", "groups"}:  # else reported already: take the implied one
        scope = queue["scope"]
    overflow = [t.get("overflow_to") for t in groups]
    return ShopConfig.model_construct(
        id="",
        agents=tuple(
            AgentConfig.model_construct(id=_name(t.get("id"), f"a{i}"))
            for i, t in enumerate(agents)
        ),
        groups=tuple(
            GroupConfig.model_construct(
                name=_name(t.get("name"), f"g{i}"),
                agents=tuple(_name(a, "-") for a in _list(t.get("agents"))),
                overflow_to=overflow[i] if isinstance(overflow[i], str) else None,
            )
            for i, t in enumerate(groups)
        ),
        queue=QueueConfig.model_construct(scope=scope, groups=queue_groups),
    )


def _shop_problems(path: Path, raw: dict[str, Any]) -> ShopConfig | list[ConfigProblem]:
    result = validate(ShopConfig, raw, path)
    if isinstance(result, ShopConfig):
        refs = shop_reference_problems(result)
        return [ConfigProblem(path, k, m) for k, m in refs] or result
    if not isinstance(raw.get("agents"), list):  # every group reference would look wrong
        return result
    # Stand-in names may cause problems under keys pydantic has already reported: skip those.
    reported = {p.key for p in result}
    refs = shop_reference_problems(_partial_shop(raw))
    return result + [ConfigProblem(path, k, m) for k, m in refs if k not in reported]


def load_shop_file(path: Path) -> ShopConfig:
    """Read and validate one shop file; raise `ConfigError` with all its problems."""
    raw = _read_toml(path)
    result = [raw] if isinstance(raw, ConfigProblem) else _shop_problems(path, raw)
    if isinstance(result, list):
        raise ConfigError(result)
    return result


def _load_daemon_file(
    path: Path, problems: list[ConfigProblem]
) -> tuple[_DaemonFile | None, Path | None]:
    """The daemon file (None if invalid) and the shop folder to check (None if unknown)."""
    raw = _read_toml(path)
    if isinstance(raw, ConfigProblem):
        problems.append(raw)
        fallback = path.parent / "shops"  # a TOML syntax error: check the usual folder
        return None, fallback if path.is_file() and fallback.is_dir() else None
    shops_dir = _table(raw.get("shops")).get("dir")
    folder = path.parent / (shops_dir if isinstance(shops_dir, str) else "shops")
    result = validate(_DaemonFile, raw, path)
    if isinstance(result, list):  # if [kafka] alone is valid, cross-check it all the same
        problems.extend(result)
        kafka = validate(KafkaConfig, _table(raw.get("kafka")), path)
    else:
        kafka = result.kafka
    if isinstance(kafka, KafkaConfig):
        problems.extend(ConfigProblem(path, f"kafka.{k}", m) for k, m in kafka_problems(kafka))
        cafile = None if kafka.ssl_cafile is None else path.parent / kafka.ssl_cafile
        if cafile is not None and not cafile.is_file():
            problems.append(ConfigProblem(path, "kafka.ssl_cafile", f"no such file: {cafile}"))
    return (result if isinstance(result, _DaemonFile) else None), folder


def _load_shops(
    config_path: Path, folder: Path, problems: list[ConfigProblem]
) -> tuple[dict[str, ShopConfig], dict[str, Path]]:
    """Every shop in `folder` (file name order, skipping hidden files) and its file."""
    files = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    files = [f for f in files if f.is_file() and not f.name.startswith(".")]
    if not files:
        why = "has no *.toml shop files" if folder.is_dir() else "does not exist"
        problems.append(ConfigProblem(config_path, "shops.dir", f"folder {folder} {why}"))
    configs: dict[str, ShopConfig] = {}
    sources: dict[str, Path] = {}
    for file in files:
        raw = _read_toml(file)
        result = [raw] if isinstance(raw, ConfigProblem) else _shop_problems(file, raw)
        shop_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(shop_id, str) and shop_id in sources:
            text = f"shop {shop_id!r} is also configured in {sources[shop_id]}"
            result = [
                ConfigProblem(file, "id", text),
                *(result if isinstance(result, list) else []),
            ]
        elif isinstance(shop_id, str):
            sources[shop_id] = file
        if isinstance(result, list):
            problems.extend(result)
        else:
            configs[result.id] = result
    return configs, sources


def load_config(path: Path) -> FenliuConfig:
    """Read `fenliu.toml` and every shop file it points at; raise `ConfigError` with all
    problems of all files at once."""
    problems: list[ConfigProblem] = []
    daemon, folder = _load_daemon_file(path, problems)
    configs, sources = _load_shops(path, folder, problems) if folder else ({}, {})
    if problems or daemon is None or folder is None:
        raise ConfigError(problems)
    base = path.parent.absolute()
    kafka = daemon.kafka
    if kafka.ssl_cafile is not None:
        kafka = kafka.model_copy(update={"ssl_cafile": base / kafka.ssl_cafile})
    return FenliuConfig(
        kafka=kafka,
        redis=daemon.redis,
        http=daemon.http,
        shops=ShopsConfig(dir=folder.absolute()),
        config_path=path.absolute(),
        shop_configs=configs,
        shop_files={k: v.absolute() for k, v in sources.items()},
    )


# --- fenliu check-config -------------------------------------------------------------------------


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def describe_shop(shop: ShopConfig) -> str:
    """One line saying what a shop configures, as `fenliu check-config` prints it."""
    q = shop.queue
    scope = "scope shop," if q.scope == "shop" else f"scope groups: {', '.join(q.groups)};"
    queueing = f"queueing on ({scope} default cap {q.default_cap})" if q.enabled else "queueing off"
    groups = ", ".join(g.name for g in shop.groups)
    return (
        f"shop {shop.id}: {_count(len(shop.agents), 'agent')}, "
        f"{_count(len(shop.groups), 'group')} ({groups}), mode {shop.mode.value}, {queueing}"
    )


def check_config_command(path: Path) -> int:
    """`fenliu check-config PATH`: print every problem to stderr and return 1, or one summary
    line per shop to stdout and return 0."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    for shop in config.shop_configs.values():
        print(describe_shop(shop))
    return 0
