"""The development Redis: a throw-away `redis-server` as a child process.

`RedisServer` is a `ManagedProcess` (daemon.dev.processes) whose readiness is a PING answered
with PONG; it may keep an append-only file, or be a node of a Redis Cluster.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Literal

from daemon.dev.processes import HOST, DevStackError, ManagedProcess, NotReadyError

__all__ = ["AppendFsync", "RedisServer"]

AppendFsync = Literal["always", "everysec", "no"]


class RedisServer(ManagedProcess):
    """A throw-away `redis-server` on 127.0.0.1, without a password.

    By default nothing is persisted: a restart forgets everything. With `appendfsync` it keeps
    an append-only file in its folder (`--appendonly yes --appendfsync X`), which a restart on
    the same port and folder replays; "always" fsyncs every write, so even `kill()` loses no
    acknowledged write. With `cluster` it is a Redis Cluster node (tests/redis_cluster.py
    joins three into a cluster; the node keeps its cluster layout in `nodes.conf`).
    """

    name = "redis"

    def __init__(
        self,
        port: int | None = None,
        *,
        appendfsync: AppendFsync | None = None,
        cluster: bool = False,
        log_dir: Path | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        super().__init__(port, log_dir=log_dir, startup_timeout=startup_timeout)
        self._appendfsync = appendfsync
        self._cluster = cluster

    @property
    def appendfsync(self) -> AppendFsync | None:
        """The append-only file's fsync policy, or None when nothing is persisted."""
        return self._appendfsync

    @property
    def data_dir(self) -> Path:
        """The server's working folder (its log, and its append-only files if any)."""
        return self._dir

    @property
    def url(self) -> str:
        """The client URL of database 0: ``"redis://127.0.0.1:PORT/0"``."""
        return f"redis://{HOST}:{self.port}/0"

    def _command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise DevStackError(
                "redis-server is not on PATH; install Redis "
                "(e.g. apt-get install redis-server, or brew install redis)"
            )
        if self.appendfsync is None:
            persistence = ["--appendonly", "no"]
        else:
            persistence = ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        if self._cluster:  # a node of a Redis Cluster (joined by `redis-cli --cluster create`);
            # the other masters keep serving their slots while one is down
            persistence += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                            "--cluster-require-full-coverage", "no"]  # fmt: skip
        # fmt: off
        return [
            binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            *persistence,
            "--dir", str(self._dir),
            "--daemonize", "no",
        ]
        # fmt: on

    def _probe(self) -> None:
        with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
        if not answer.startswith(b"+PONG"):
            raise NotReadyError(f"PING answered {answer!r}")
