"""How a failed connection is worded in logs and errors: TLS named as TLS.

redis-py says `network:ConnectionError` whether Redis is down or its certificate is not
trusted, and aiokafka logs either as "Unable connect". The cause is further down the
exception chain (`__cause__`, `__context__`) or among a log record's arguments: an
`ssl.SSLError` is a TLS failure (`tls: certificate verify failed: ...`, the SSL library's
reason), an `OSError` is a peer that cannot be reached (`unreachable: Connect call failed
...`), anything else is worded as itself. Neither names a secret: the reasons come from the
OS and the SSL library, never from a URL.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

FailureKind = str  # "tls" | "unreachable" | "error"
_DEPTH = 8  # links of the exception chain followed


def chain(exc: BaseException) -> list[BaseException]:
    """`exc` and its causes, outermost first (at most _DEPTH, no cycles)."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(found) < _DEPTH and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def tls_reason(error: ssl.SSLError) -> str:
    """The SSL library's reason, without the `[SSL: X]` prefix and `(_ssl.c:N)` suffix."""
    verify = getattr(error, "verify_message", None)
    if isinstance(error, ssl.SSLCertVerificationError) and verify:
        return f"certificate verify failed: {verify}"
    text = error.strerror or str(error)
    if text.startswith("[SSL"):
        text = text.partition("] ")[2] or text
    return text.rsplit(" (_ssl.c:", 1)[0] or type(error).__name__


def failure(exc: BaseException) -> tuple[FailureKind, str]:
    """(kind, reason): "tls" if an SSL error is in the chain, "unreachable" if an OSError
    is (a refused or timed-out connection), else "error" with the exception's own text."""
    links = chain(exc)
    for link in links:
        if isinstance(link, ssl.SSLError):
            return "tls", tls_reason(link)
    for link in links:
        if isinstance(link, OSError):
            return "unreachable", link.strerror or str(link) or type(link).__name__
    return "error", str(exc) or type(exc).__name__


def failure_text(exc: BaseException) -> str:
    """`tls: <reason>`, `unreachable: <reason>` or the error's own text."""
    kind, reason = failure(exc)
    return reason if kind == "error" else f"{kind}: {reason}"


def tls_in(items: Iterable[object]) -> str | None:
    """The reason of the first SSL error among `items` (a log record's arguments), if any."""
    for item in items:
        if isinstance(item, BaseException):
            kind, reason = failure(item)
            if kind == "tls":
                return reason
    return None
