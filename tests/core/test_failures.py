"""A failed connection is worded by its cause (daemon.service.failures): TLS named as TLS,
distinct from a peer that cannot be reached, whatever the client library's own words."""

from __future__ import annotations

import ssl

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from daemon.service.failures import failure_text
from daemon.service.store import StoreError


def _redis_error(cause: BaseException) -> RedisConnectionError:
    """What redis-py 8 raises: `network:ConnectionError`, its cause chained."""
    try:
        try:
            raise cause
        except OSError as exc:
            raise RedisConnectionError("network:ConnectionError") from exc
    except RedisConnectionError as error:
        return error


def _unverified() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
        "certificate in certificate chain (_ssl.c:1006)",
    )  # fmt: skip
    error.verify_message = "self-signed certificate in certificate chain"
    return error


@pytest.mark.parametrize(
    ("error", "text", "tls"),
    [
        (_redis_error(_unverified()),
         "tls: certificate verify failed: self-signed certificate in certificate chain", True),
        (_redis_error(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number "
                                      "(_ssl.c:1000)")),
         "tls: wrong version number", True),
        (_redis_error(ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")),
         "unreachable: Connect call failed ('127.0.0.1', 1)", False),
        (_redis_error(TimeoutError()), "unreachable: TimeoutError", False),
        (ResponseError("NOSCRIPT No matching script"), "NOSCRIPT No matching script", False),
    ],
)  # fmt: skip
def test_a_failure_is_worded_by_its_cause(error: BaseException, text: str, tls: bool) -> None:
    assert failure_text(error) == text
    stored = StoreError.of("checkpoint not written", error)
    assert (str(stored), stored.tls) == (f"checkpoint not written: {text}", tls)
