"""Child processes that answer a protocol and never outlive us: the machinery under the dev stack.

`ManagedProcess` starts one child on a fixed loopback port, sends its output to a log file, and
returns from `start()` only once the child answers its own protocol (a subclass's `_probe`:
daemon.dev.broker asks Kafka Metadata, daemon.dev.redis_server sends PING). It is a context
manager; `stop()` is idempotent and `start()` after `stop()` (or `kill()`) comes back on the
same port and folder (tests use this to simulate an outage).

Children never outlive the parent: each runs in its own process group, which `stop()`
terminates (then kills); an `atexit` hook stops whatever is still running; and on Linux the
kernel kills a child whose parent dies without running Python's exit hooks (``kill -9``,
``os._exit``). That last guard is tied to the thread that started the child, so start
processes from a thread that lives as long as you need them (the main thread).

Errors::

    DevStackError            a binary is missing, or a process did not come up in time
    NotReadyError            (inside a probe) the process is up but does not answer right yet
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

__all__ = ["HOST", "DevStackError", "ManagedProcess", "NotReadyError", "free_port"]

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


class NotReadyError(Exception):
    """The process is up but does not answer its protocol correctly (yet)."""


class ManagedProcess:
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
        """Return if the process serves its protocol; raise OSError or NotReadyError."""
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
            except (OSError, NotReadyError) as exc:
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
