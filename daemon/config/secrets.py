"""Settings that may hold a secret, and how a secret stays out of text (contract §5).

Every setting that can hold a secret (`redis.url`, `kafka.sasl_password`,
`kafka.ssl_password`, `http.token`) may name environment variables as `${NAME}`
(`expand_env`): a container passes its password in the environment and `fenliu.toml` stays
free of it. An unset variable is a problem that names the variable, never a value.

A URL's credentials are the password in its user info and every query argument whose name
says secret (`is_secret_name`: pass, secret, token, credential, auth, private or key, except
a file: `ssl_keyfile` names a path, `ssl_password` is a secret). `redact_url` replaces them
with `***`; `mask_urls` does so for every URL inside a text, so a URL that reaches a log line
by way of a library's message is masked all the same (daemon.service.logs).
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

__all__ = ["expand_env", "is_secret_name", "mask_urls", "redact_url"]

_BRACED = re.compile(r"\$\{(\w+)\}")
_BRACED_OR_BARE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_SECRET_NAME = re.compile(r"pass|secret|token|credential|auth|private|key", re.IGNORECASE)
_PATH_NAME = re.compile(r"(file|path|certs|dir)$", re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
HIDDEN = "***"


def expand_env(text: str, *, bare: bool = False) -> str:
    """`text` with each `${NAME}` (with `bare`, also `$NAME`) replaced by the environment's
    value. ValueError naming the first variable that is not set (never a value)."""
    pattern = _BRACED_OR_BARE if bare else _BRACED
    names = [m.group(1) or m.group(2) for m in pattern.finditer(text)]
    missing = [name for name in names if name not in os.environ]
    if missing:
        raise ValueError(f"uses environment variable {missing[0]}, which is not set")
    return pattern.sub(lambda m: os.environ[m.group(1) or m.group(2)], text)


def is_secret_name(name: str) -> bool:
    """Whether a URL query argument named `name` holds a secret (see the module docstring)."""
    return bool(_SECRET_NAME.search(name)) and not _PATH_NAME.search(name)


def redact_url(url: str) -> str:
    """`url` with the password of its user info (the whole user info when it has no ':')
    and the value of every query argument named like a secret replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # Text, not urlsplit: a password holding '/', '#' or '?' must not end up in the host
    # part; the last '@' ends the user info (hiding too much rather than too little).
    userinfo, at, rest = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    hidden = (f"{user}:{HIDDEN}@" if colon else f"{HIDDEN}@") if at else ""
    rest, mark, query = rest.partition("?")
    args = []
    for arg in query.split("&") if mark else ():
        name, equals, _ = arg.partition("=")
        args.append(f"{name}={HIDDEN}" if equals and is_secret_name(unquote(name)) else arg)
    return f"{scheme}://{hidden}{rest}{mark}{'&'.join(args)}"


def mask_urls(text: str) -> str:
    """`text` with every URL in it redacted (`redact_url`)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)
