"""A three-master Redis Cluster on free loopback ports, for tests and benches.

Three `redis-server --cluster-enabled yes` processes (daemon.dev.stack.RedisServer, cluster=True,
append-only file on, so a stopped master comes back with its data), joined by
`redis-cli --cluster create ... --cluster-replicas 0`. A node's cluster bus listens on its
port + 10000, so ports are picked with that one free too. `url` names the first node, as
`[redis] url` does with `cluster = true`; `node_of(key)` says which server holds a key.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from daemon.dev.stack import HOST, DevStackError, RedisServer, free_port

MASTERS = 3
BUS_OFFSET = 10000


def _free_with_bus() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port + BUS_OFFSET))
            except OSError:
                continue
        return port
    raise DevStackError("no free port pair (port, port + 10000) found for a cluster node")


class RedisCluster:
    """Three masters, slots spread evenly, no replicas; stopped nodes restart with their data."""

    def __init__(self, folder: Path) -> None:
        self.nodes = [
            RedisServer(
                _free_with_bus(), appendfsync="always", cluster=True, log_dir=folder / f"n{i}"
            )
            for i in range(MASTERS)
        ]

    @property
    def url(self) -> str:
        """The first node's URL (`[redis] url` with `cluster = true`)."""
        return self.nodes[0].url

    def start(self) -> Self:
        """Start the nodes and join them into a cluster; wait until every slot is served."""
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise DevStackError(
                "redis-cli is not on PATH (it comes with redis-server / redis-tools)"
            )
        addresses = [f"{HOST}:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every node reports cluster_state:ok (every slot served)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(self._cluster_ok(node) for node in self.nodes):
                    return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.1)
        raise DevStackError(f"the cluster did not reach cluster_state:ok in {timeout:g} s")

    @staticmethod
    def _cluster_ok(node: RedisServer) -> bool:
        with redis.Redis(host=HOST, port=node.port, decode_responses=True) as client:
            info = client.cluster("INFO")
        return bool(info.get("cluster_state") == "ok")

    def node_of(self, key: str) -> RedisServer:
        """The master that holds `key`'s slot."""
        with redis.Redis(host=HOST, port=self.nodes[0].port) as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            shards = client.execute_command("CLUSTER SLOTS")
        for first, last, master, *_ in shards:
            if first <= slot <= last:
                port = int(master[1])
                return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no master serves slot {slot}")

    def flush(self) -> None:
        """Empty every master."""
        for node in self.nodes:
            with redis.Redis(host=HOST, port=node.port) as client:
                client.flushall()

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
