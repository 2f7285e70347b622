"""Loading `fenliu.toml` and its folder of shop files (docs/contract.md §5).

`load_config` reads everything up front and returns one frozen `FenliuConfig`, or raises
`ConfigError` carrying every problem of every file at once, each a `ConfigProblem` printed
as ``file: key: message`` (keys are dotted TOML paths: ``agents[3].weight``,
``kafka.topics.inquiries``). A caller gets a whole valid configuration or none. What a valid
shop is lives in `daemon.core.config`, what `fenliu.toml` may say in
`daemon.config.daemon_file`; this module reads the TOML files, checks a shop's
cross-references even when its names fail validation, checks that the TLS files exist
(and that a Kafka client certificate loads with its key and password), and is `fenliu
check-config`. Secrets (daemon.config.secrets: `redis.url`'s credentials, `kafka.sasl_password`,
`kafka.ssl_password`, `http.token`) appear neither in the str/repr of the configuration nor
in any message; an unset `${NAME}` is named, its key too.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from daemon.config.daemon_file import (
    KAFKA_TLS_FILES,
    DaemonFile,
    FenliuConfig,
    KafkaConfig,
    RedisConfig,
    kafka_problems,
)
from daemon.config.problems import FILE_KEY, ConfigError, ConfigProblem, validate
from daemon.core.config import (
    AgentConfig,
    GroupConfig,
    QueueConfig,
    RepliesConfig,
    ShopConfig,
    format_duration_ms,
    shop_reference_problems,
)

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "FenliuConfig",
    "check_config_command",
    "load_config",
    "load_config_or_report",
    "load_shop_file",
]

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
) -> tuple[DaemonFile | None, Path | None]:
    """The daemon file (None if invalid) and the shop folder to check (None if unknown)."""
    raw = _read_toml(path)
    if isinstance(raw, ConfigProblem):
        problems.append(raw)
        fallback = path.parent / "shops"  # a TOML syntax error: check the usual folder
        return None, fallback if path.is_file() and fallback.is_dir() else None
    shops_dir = _table(raw.get("shops")).get("dir")
    folder = path.parent / (shops_dir if isinstance(shops_dir, str) else "shops")
    result = validate(DaemonFile, raw, path)
    if isinstance(result, list):  # if [kafka] alone is valid, cross-check it all the same
        problems.extend(result)
        kafka = validate(KafkaConfig, _table(raw.get("kafka")), path)
    else:
        kafka = result.kafka
    if isinstance(kafka, KafkaConfig):
        problems.extend(ConfigProblem(path, f"kafka.{k}", m) for k, m in kafka_problems(kafka))
        problems.extend(ConfigProblem(path, f"kafka.{k}", m) for k, m in _kafka_tls(kafka, path))
    if isinstance(result, DaemonFile):
        for name, file in result.redis.tls_files.items():
            if not (path.parent / file).is_file():
                message = f"{name} names no such file: {path.parent / file}"
                problems.append(ConfigProblem(path, "redis.url", message))
    return (result if isinstance(result, DaemonFile) else None), folder


def _kafka_tls(kafka: KafkaConfig, path: Path) -> list[tuple[str, str]]:
    """The TLS files of `[kafka]` that do not exist, or a client certificate that does not
    load with its key and password (the SSL library's reason; never the password)."""
    problems: list[tuple[str, str]] = []
    files = {n: path.parent / f for n in KAFKA_TLS_FILES if (f := getattr(kafka, n)) is not None}
    for name, file in files.items():
        if not file.is_file():
            problems.append((name, f"no such file: {file}"))
    if problems or "ssl_certfile" not in files:
        return problems
    password = kafka.ssl_password.get_secret_value() if kafka.ssl_password else None
    try:  # with no password, an encrypted key fails here instead of prompting on the terminal
        ssl.create_default_context().load_cert_chain(
            files["ssl_certfile"], files.get("ssl_keyfile"), password=password or _no_password
        )
    except ssl.SSLError as exc:
        reason = str(exc).rsplit(" (_ssl.c:", 1)[0]
        message = "does not load with its key (a wrong ssl_password, or not its key)"
        problems.append(("ssl_certfile", f"{message}: {reason}"))
    except (OSError, ValueError) as exc:
        problems.append(("ssl_certfile", f"does not load with its key and password: {exc}"))
    return problems


def _no_password() -> str:
    raise ValueError("its key is encrypted: set ssl_password")


def _absolute(
    kafka: KafkaConfig, redis: RedisConfig, base: Path
) -> tuple[KafkaConfig, RedisConfig]:
    """`[kafka]` and `[redis]` with their TLS file paths made absolute under `base`."""
    files = {n: base / f for n in KAFKA_TLS_FILES if (f := getattr(kafka, n)) is not None}
    return kafka.model_copy(update=files), redis.files_under(base)


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
    kafka, redis = _absolute(daemon.kafka, daemon.redis, path.parent.absolute())
    return FenliuConfig(
        kafka=kafka,
        redis=redis,
        http=daemon.http,
        shops=daemon.shops.model_copy(update={"dir": folder.absolute()}),
        config_path=path.absolute(),
        shop_configs=configs,
        shop_files={k: v.absolute() for k, v in sources.items()},
    )


Stamp = tuple[tuple[str, int, int, int], ...]


def stamp(config_path: Path, shops_dir: Path) -> Stamp:
    """What `[shops] watch` compares: fenliu.toml and every ``*.toml`` of the shops folder,
    each as (path, inode, size, modification time in ns), links followed — so an edit, a
    file added or removed, and a Kubernetes ConfigMap's swap of its `..data` link (which
    puts new files behind the same names) all change it. A file that cannot be read shows
    as (path, -1, -1, -1): the reload that follows says why."""
    paths = [config_path, *sorted(shops_dir.glob("*.toml"))]
    found = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            found.append((str(path), -1, -1, -1))
        else:
            found.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)


def control_socket(config_path: Path) -> Path:
    """Where the daemon started with `config_path` listens for `fenliu reload` on a Unix
    socket, whatever `[http] listen` says now: a folder of the user's own in the temporary
    directory, the socket named after the file's absolute path (symlinks kept as given: a
    Kubernetes ConfigMap swaps the file behind one)."""
    absolute = os.path.abspath(config_path)  # normalised, not resolved (see above)
    name = hashlib.sha256(absolute.encode()).hexdigest()[:16]
    user = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"fenliu-{user}" / f"{name}.sock"


# --- fenliu check-config -------------------------------------------------------------------------


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def describe_shop(shop: ShopConfig) -> str:
    """One line saying what a shop configures, as `fenliu check-config` prints it."""
    q = shop.queue
    scope = "scope shop," if q.scope == "shop" else f"scope groups: {', '.join(q.groups)};"
    queueing = f"queueing on ({scope} default cap {q.default_cap})" if q.enabled else "queueing off"
    aging = f", priority aging {format_duration_ms(q.priority_aging)}" if q.priority_aging else ""
    groups = ", ".join(g.name for g in shop.groups)
    r, usual = shop.replies, RepliesConfig()
    deadline = f", reply deadline {format_duration_ms(r.deadline)}"
    deadline = deadline if r.deadline != usual.deadline else ""
    after = r.reassign_after
    moves = f", unanswered first messages move after {format_duration_ms(after)}" if after else ""
    return (
        f"shop {shop.id}: {_count(len(shop.agents), 'agent')}, "
        f"{_count(len(shop.groups), 'group')} ({groups}), mode {shop.mode.value}, {queueing}"
        f"{aging}{deadline}{moves}"
    )


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def load_config_or_report(
    path: Path, *, report: Callable[[str], None] = _to_stderr, preface: str | None = None
) -> FenliuConfig | None:
    """`load_config`, or None once every problem was reported, one `report` call each (a line
    on stderr unless told otherwise), after `preface` if given: a command then returns its
    configuration-error exit code."""
    try:
        return load_config(path)
    except ConfigError as exc:
        if preface is not None:
            report(preface)
        for problem in exc.problems:
            report(str(problem))
        return None


def check_config_command(path: Path) -> int:
    """`fenliu check-config PATH`: print every problem to stderr and return 1, or one summary
    line per shop to stdout and return 0."""
    config = load_config_or_report(path)
    if config is None:
        return 1
    for shop in config.shop_configs.values():
        print(describe_shop(shop))
    return 0
