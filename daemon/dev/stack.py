"""Real processes for local runs and tests: a Kafka-protocol broker (Tansu) and a Redis, and
a daemon configuration pointing at them. `fenliu dev`, the tests and the benches import from here.

    processes.py     ManagedProcess: a child on a loopback port, started until it answers its
                     protocol, logged to a file, never outliving us; DevStackError, free_port
    broker.py        Broker: Tansu, ready when a Kafka Metadata request answers
    redis_server.py  RedisServer: redis-server, ready when PING answers

`Broker` and `RedisServer` each start one child process on a loopback port and return from
`start()` only once it answers. Both are context managers; `stop()` is idempotent and `start()`
after `stop()` (or `kill()`) comes back on the same port and folder (tests use this to simulate
an outage). A `Broker` may advertise another port than its own (a fault proxy's, see
tests/faultproxy.py); a `RedisServer` may keep an append-only file so its data survives a
restart. Start them from a thread that lives as long as you need them (the main thread): see
daemon.dev.processes.

Errors::

    DevStackError            a binary is missing, or a process did not come up in time
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from daemon.config import TopicsConfig
from daemon.dev.broker import Broker, broker_binary
from daemon.dev.processes import HOST, DevStackError, free_port
from daemon.dev.redis_server import AppendFsync, RedisServer

__all__ = [
    "HOST",
    "AppendFsync",
    "Broker",
    "DevStackError",
    "RedisServer",
    "broker_binary",
    "free_port",
    "write_daemon_config",
]


def write_daemon_config(
    folder: Path,
    *,
    bootstrap: str,
    redis_url: str,
    shops: Mapping[str, str],
    topics: TopicsConfig | None = None,
    group_id: str = "fenliu-dev",
    key_prefix: str = "fenliu",
    redis_cluster: bool = False,
    kafka_extra: str = "",
    http_port: int | None = None,
    per_agent_metrics: bool = False,
) -> Path:
    """A fenliu.toml (HTTP on `http_port` of 127.0.0.1, else a free port) and
    shops/<name>.toml files in `folder`.

    `shops` maps a file name to the shop file's TOML text; `kafka_extra` is added to the
    `[kafka]` table as it is (e.g. `session_timeout = "3s"`); `per_agent_metrics` as
    `fenliu dev`'s live view needs it. The broker here is Tansu, so
    `leave_group = false` (a leave during a rebalance can stall its groups). Used by
    `fenliu dev`, the end-to-end tests and the benches; returns the fenliu.toml path.
    """
    (folder / "shops").mkdir(parents=True, exist_ok=True)
    for name, text in shops.items():
        (folder / "shops" / f"{name}.toml").write_text(text)
    topic_table = ""
    if topics is not None:
        lines = "\n".join(f'{k} = "{v}"' for k, v in topics.model_dump().items())
        topic_table = f"\n[kafka.topics]\n{lines}\n"
    path = folder / "fenliu.toml"
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ngroup_id = "{group_id}"\n'
        f"leave_group = false\n{kafka_extra}\n"
        f"{topic_table}\n"
        f'[redis]\nurl = "{redis_url}"\nkey_prefix = "{key_prefix}"\n'
        f"cluster = {'true' if redis_cluster else 'false'}\n\n"
        f'[http]\nlisten = "{HOST}:{http_port or free_port()}"\n'
        f"per_agent_metrics = {'true' if per_agent_metrics else 'false'}\n\n"
        '[shops]\ndir = "shops"\n'
    )
    return path
