"""Throw-away TLS material and a TLS-only redis-server for tests.

`make_certs` runs `openssl` to make a CA, a server certificate for 127.0.0.1 signed by it,
a client certificate whose key is encrypted with a password, and a second CA that signed
nothing (the wrong CA to trust). `TlsRedis` is daemon.dev's RedisServer listening on a TLS
port only (`--port 0 --tls-port`), with a password (`requirepass`); it is started and
stopped by PID like every ManagedProcess. `auth_and_ping` is the readiness probe of a
redis-server that needs a password (this one, and tests/integration/test_redis_acl.py's).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from daemon.dev.processes import HOST, NotReadyError
from daemon.dev.redis_server import RedisServer

KEY_PASSWORD = "key-hunter2"


@dataclass(frozen=True)
class Certs:
    """Paths of the PEM files `make_certs` wrote."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with KEY_PASSWORD
    other_ca: Path


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


def make_certs(folder: Path) -> Certs:
    """A CA, a server and a client certificate signed by it, and another CA, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other"):
        subject = f"/CN=fenliu test {ca}"
        _openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-subj", subject)  # fmt: skip
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, extra in (("server", ["-extfile", "server.ext"]), ("client", [])):
        _openssl(folder, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN=fenliu test {name}")  # fmt: skip
        _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey",
                 "ca.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "1",
                 *extra)  # fmt: skip
    _openssl(folder, "pkey", "-in", "client.key", "-out", "client.enc.key", "-aes256",
             "-passout", f"pass:{KEY_PASSWORD}")  # fmt: skip
    return Certs(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.enc.key",
        other_ca=folder / "other.pem",
    )


class TlsRedis(RedisServer):
    """A redis-server that speaks TLS only, with a password, on 127.0.0.1."""

    def __init__(self, certs: Certs, password: str, *, auth_clients: bool = False) -> None:
        super().__init__()
        self.certs = certs
        self.password = password
        self.auth_clients = auth_clients

    def tls_url(self, ca: Path) -> str:
        """A `rediss://` URL with the password, trusting `ca`."""
        return f"rediss://:{self.password}@{HOST}:{self.port}/0?ssl_ca_certs={ca}"

    def _command(self) -> list[str]:
        command = super()._command()
        at = command.index("--port")
        command[at : at + 2] = ["--port", "0", "--tls-port", str(self.port)]
        # fmt: off
        return [
            *command,
            "--tls-cert-file", str(self.certs.server_cert),
            "--tls-key-file", str(self.certs.server_key),
            "--tls-ca-cert-file", str(self.certs.ca),
            "--tls-auth-clients", "yes" if self.auth_clients else "no",
            # a client certificate is checked inside a TLS 1.2 handshake; under TLS 1.3 the
            # client's handshake is over before the server refuses it, and the refusal then
            # reaches the client as a reset or as an alert, by the timing of the two
            *(["--tls-protocols", "TLSv1.2"] if self.auth_clients else []),
            "--requirepass", self.password,
        ]
        # fmt: on

    def _probe(self) -> None:
        context = ssl.create_default_context(cafile=str(self.certs.ca))
        if self.auth_clients:
            context.load_cert_chain(
                self.certs.client_cert, self.certs.client_key, password=KEY_PASSWORD
            )
        with (
            socket.create_connection((HOST, self.port), timeout=1.0) as raw,
            context.wrap_socket(raw, server_hostname=HOST) as sock,
        ):
            auth_and_ping(sock, self.password)


def auth_and_ping(sock: socket.socket | ssl.SSLSocket, *auth: str) -> None:
    """Send `AUTH *auth` and `PING` on a connected socket; NotReadyError unless PONG."""
    sock.sendall(f"AUTH {' '.join(auth)}\r\nPING\r\n".encode())
    answer = b""
    while b"\r\n" not in answer.partition(b"\r\n")[2]:  # both replies
        chunk = sock.recv(64)
        if not chunk:
            break
        answer += chunk
    if b"+PONG" not in answer:
        raise NotReadyError(f"AUTH and PING answered {answer!r}")
