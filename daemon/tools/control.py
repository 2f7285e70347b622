"""`fenliu reload`: ask the running daemon to reload (contract §5, Reload; §8).

The daemon is found, in this order: at `--url`; on the Unix socket the daemon started with
this configuration file listens on (`daemon.config.control_socket`), which does not move
when `[http] listen` is edited and is reached as this machine whatever that address is; at
the address the file's `[http] listen` names now (127.0.0.1 for an any-address listener).
"""

from __future__ import annotations

import http.client
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

from daemon.config import control_socket, load_config_or_report

TIMEOUT_S = 45  # the daemon waits up to 30 s for a reload (control_plane.RELOAD_WAIT_S)


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=TIMEOUT_S)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def over_socket(path: Path, route: str = "/-/reload") -> tuple[int, str] | None:
    """POST `route` on the daemon's Unix socket: (status, text), or None if no daemon
    listens there (none started with this file, or it is gone)."""
    connection = _UnixConnection(path)
    try:
        connection.connect()
    except OSError:
        return None
    try:
        connection.request("POST", route, body=b"")
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def _over_http(url: str) -> tuple[int, str]:
    """POST to `url`: (status, text); OSError when nobody answers."""
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def reload_command(
    config_path: Path, url: str | None = None, *, dry_run: bool = False, as_json: bool = False
) -> int:
    """POST /-/reload to the daemon configured by `config_path` (or at `url`); print its
    answer: what changed per shop (with `dry_run`, what would; nothing is applied), as JSON
    with `as_json`. Exit 1 if the files do not validate, the reload was refused or nobody
    answered."""
    query = "&".join(q for q, on in (("dry_run=1", dry_run), ("format=json", as_json)) if on)
    route = "/-/reload" + (f"?{query}" if query else "")
    preface = "the configuration does not validate; nothing was sent:"
    config = load_config_or_report(config_path, preface=preface)
    if config is None:
        return 1
    answer = None
    if url is None:
        answer = over_socket(control_socket(config_path), route)
        host = config.http.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        url = f"http://{f'[{host}]' if ':' in host else host}:{config.http.port}"
    target = url.rstrip("/") + route
    if answer is None:
        try:
            answer = _over_http(target)
        except (urllib.error.URLError, OSError) as exc:
            print(f"no daemon answered at {target}: {exc}", file=sys.stderr)
            return 1
    status, text = answer
    print(text.strip(), file=sys.stdout if status == 200 else sys.stderr)
    return 0 if status == 200 else 1
