"""`fenliu explain`: print why distribution between agents is uneven (contract §8).

Two sources, one output (the table of `daemon.core.explain.render_table`, or JSON):

    fenliu explain [--url http://127.0.0.1:9464] --shop ID [--json]
        asks a running daemon (`GET /api/shops/{id}/explain`; --url defaults to the default
        `[http] listen`); with several instances, ask the one that owns the shop's
        partition (the answer's "partition" is null on the others); a daemon with an
        `[http] token` needs it in the environment variable FENLIU_HTTP_TOKEN
    fenliu explain FILE.json [--policy NAME] [--json]
        reads what `fenliu simulate --json` wrote: {"policies": {NAME: {"explain": ...}}}
        (a file holding one explanation, as the daemon answers it, is read as well)

Exit 0 when something was printed, 1 when the explanation could not be had (daemon
unreachable, unknown shop, unreadable file), 2 for a wrong combination of arguments.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import orjson

from daemon.core.explain import render_table

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_URL = "http://127.0.0.1:9464"  # the default `[http] listen`
TIMEOUT_S = 10.0
TOKEN_ENV = "FENLIU_HTTP_TOKEN"  # the daemon's [http] token (an argument would show in ps)


class ExplainError(Exception):
    """The explanation could not be had; the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class ExplainOptions:
    """What `fenliu explain` was asked."""

    file: Path | None
    url: str | None
    shop: str | None
    policy: str | None
    as_json: bool


def fetch(
    url: str, shop_id: str, timeout: float = TIMEOUT_S, token: str | None = None
) -> dict[str, Any]:
    """A running daemon's explanation of one shop (ExplainError if it cannot be had);
    `token` is the daemon's `[http] token`, when it has one."""
    address = f"{url.rstrip('/')}/api/shops/{quote(shop_id, safe='')}/explain"
    if not address.startswith(("http://", "https://")):
        raise ExplainError(f"--url {url!r} is not an http:// address of a Fenliu daemon")
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(address, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 404, 503):  # the API says why in {"error": ...}
            raise ExplainError(f"the daemon at {url}: {_error_text(exc)}") from exc
        raise ExplainError(f"the daemon at {url} answered {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ExplainError(f"cannot reach a Fenliu daemon at {url}: {reason}") from exc
    return _explanation(_parse(body, f"the answer of {address}"), f"the answer of {address}")


def _error_text(exc: urllib.error.HTTPError) -> str:
    """The sentence of a JSON API error answer, else the HTTP reason."""
    try:
        data = orjson.loads(exc.read())
    except (orjson.JSONDecodeError, OSError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return f"{exc.code} {exc.reason}"


def read_simulation(path: Path, policy: str | None) -> dict[str, dict[str, Any]]:
    """The explanations in a `fenliu simulate --json` file, by policy (ExplainError)."""
    try:
        data = _parse(path.read_bytes(), str(path))
    except OSError as exc:
        raise ExplainError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not isinstance(data, dict):
        raise ExplainError(f"{path} holds no JSON object; expected `fenliu simulate --json`")
    if "policies" not in data and "agents" in data:  # one explanation, as the daemon gives it
        if policy is not None:
            raise ExplainError(f"{path} holds one explanation, not simulated policies")
        return {"": _explanation(data, str(path))}
    policies = data.get("policies")
    if not isinstance(policies, dict) or not policies:
        raise ExplainError(f'{path} has no "policies"; expected `fenliu simulate --json`')
    if policy is not None:
        if policy not in policies:
            names = ", ".join(sorted(policies))
            raise ExplainError(f"{path} has no policy {policy!r}; it has: {names}")
        policies = {policy: policies[policy]}
    out = {}
    for name, result in policies.items():
        where = f"{path}: policy {name!r}"
        if not isinstance(result, dict) or "explain" not in result:
            raise ExplainError(f"{where} has no explanation; run `fenliu simulate` with --explain")
        out[str(name)] = _explanation(result["explain"], where)
    return out


def _parse(body: bytes, where: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ExplainError(f"{where} is not JSON: {exc}") from exc


def _explanation(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("agents"), list):
        raise ExplainError(f"{where} is not an explanation (it has no list of agents)")
    return data


def explain_command(options: ExplainOptions, out: TextIO | None = None) -> int:
    """Run `fenliu explain`; the exit code (errors are printed to stderr)."""
    out = out or sys.stdout
    problem = _usage_problem(options)
    if problem:
        return _fail(problem, EXIT_USAGE)
    try:
        if options.file is None:
            assert options.shop is not None
            token = os.environ.get(TOKEN_ENV) or None
            found = {"": fetch(options.url or DEFAULT_URL, options.shop, token=token)}
        else:
            found = read_simulation(options.file, options.policy)
        text = _render(found, as_json=options.as_json)
    except ExplainError as exc:
        return _fail(str(exc), EXIT_FAILED)
    out.write(text)
    return EXIT_OK


def _usage_problem(options: ExplainOptions) -> str | None:
    if options.file is None:
        if not options.shop:
            return "give --shop ID (of a running daemon) or a FILE of `fenliu simulate --json`"
        if options.policy:
            return "--policy goes with a simulation FILE, not with a daemon"
        return None
    if options.url is not None or options.shop:
        return "--url and --shop ask a running daemon; a simulation FILE needs neither"
    return None


def _render(found: dict[str, dict[str, Any]], *, as_json: bool) -> str:
    """One table per policy (a lone explanation, keyed "", gets no heading)."""
    if as_json:
        data = found.get("", found)
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    parts = []
    for name, explanation in found.items():
        try:
            table = render_table(explanation)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ExplainError(f"{name}: not an explanation Fenliu wrote ({exc!r})") from exc
        parts.append(f"== policy {name}\n{table}" if name else table)
    return "\n".join(parts)


def _fail(message: str, code: int) -> int:
    print(f"fenliu explain: {message}", file=sys.stderr)
    return code
