"""structlog set up as its performance guide recommends: JSON lines rendered by orjson.

One event per line with a stable snake_case name, an ISO UTC timestamp, the level and
whatever context applies (shop_id, buyer_id, agent_id, topic, partition, offset). Secrets
are never passed to a logger: configuration objects redact them in their repr, and a URL's
credentials are masked in any logged text all the same (daemon.config.secrets).

Every line is bounded, whatever is passed (contract §6, bad input included): `bound_fields`
cuts each string to FIELD_MAX characters (`…[cut, N chars]` says how long it was; a
traceback keeps its last EXCEPTION_MAX characters, where the error is), each list or mapping
to ITEMS_MAX items and DEPTH_MAX levels, and turns bytes and other objects into cut text;
`BoundedRenderer` renders the JSON and, should the line still exceed LINE_MAX bytes (control
characters escape to six bytes each), renders it again with shorter fields, then with the
naming fields only (`line_cut` the size it would have had).
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any, BinaryIO

import orjson
import structlog

from daemon.config.secrets import mask_urls
from daemon.service.failures import tls_in

FIELD_MAX = 512  # characters of one logged string: a value, a key, an item
EXCEPTION_MAX = 2048  # characters of a traceback kept: its end, which names the error
ITEMS_MAX = 32  # items of a logged list or mapping
DEPTH_MAX = 4  # levels of nesting logged
LINE_MAX = 4096  # bytes of a line, its newline included
_SHORT = 64  # characters of a field when a line is over LINE_MAX all the same
_NAMING = ("timestamp", "level", "event", "logger", "shop_id", "topic", "partition", "offset")
_CUT = re.compile(r"…\[cut, (\d+) chars\]$")
_INT_RANGE = range(-(2**63), 2**64)  # what orjson writes as a number


def configure_logging(level: str = "info", stream: BinaryIO | None = None) -> None:
    """Route structlog to JSON lines on `stream` (default stderr) at `level` and above."""
    out = stream or sys.stderr.buffer
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            bound_fields,
            BoundedRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.BytesLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers = [LibraryHandler()]
    root.setLevel(logging.WARNING)  # libraries (aiokafka, redis) speak up only when it matters


class Repeats:
    """Which lines of a repeating pattern to write: the first, then at most one per
    `quiet_s`; the ones held back in between are counted, and `admit` hands the count to the
    next line written. At most `most` patterns are remembered (all are forgotten past it)."""

    def __init__(
        self, quiet_s: float, clock: Callable[[], float] = time.monotonic, most: int = 1000
    ) -> None:
        self.quiet_s = quiet_s
        self._clock = clock
        self._most = most
        self._last: dict[Hashable, tuple[float, int]] = {}  # written at, held back since

    def admit(self, pattern: Hashable) -> int | None:
        """None: hold this line back (counted); else write it, saying how many were held."""
        now = self._clock()
        last = self._last.get(pattern)
        if last is not None and now - last[0] < self.quiet_s:
            self._last[pattern] = (last[0], last[1] + 1)
            return None
        if last is None and len(self._last) >= self._most:
            self._last.clear()
        self._last[pattern] = (now, 0)
        return 0 if last is None else last[1]


class LibraryHandler(logging.Handler):
    """Library log records (aiokafka's, say) as JSON lines like ours: `event` "library_log".

    A library that repeats itself (aiokafka logs every reconnect attempt during an outage)
    is condensed: the same message again within `quiet_s` is counted, not written, and the
    next line written for it says how many were held back (`repeated`). Its lines are
    bounded like every other (`bound_fields`), and a record caused by a TLS failure (an
    `ssl.SSLError` among its arguments: aiokafka's failed handshake) says so in `tls`.
    """

    def __init__(self, quiet_s: float = 10.0) -> None:
        super().__init__()
        self._repeats = Repeats(quiet_s)

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record unless it repeats one written less than `quiet_s` ago."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        held = self._repeats.admit((record.name, message[:FIELD_MAX]))
        if held is None:
            return
        log = structlog.get_logger("fenliu").bind(logger=record.name)
        fields: dict[str, Any] = {"message": message}
        if held:
            fields["repeated"] = held
        if record.exc_info and record.exc_info[1] is not None:
            fields["error"] = repr(record.exc_info[1])
        args = record.args if isinstance(record.args, tuple) else ()
        tls = tls_in((*args, record.exc_info[1] if record.exc_info else None))
        if tls is not None:  # aiokafka: "Unable connect to ...": a TLS failure, not a dead peer
            fields["tls"] = tls
        level = record.levelname.lower()
        getattr(log, level if level in ("warning", "error", "critical") else "info")(
            "library_log", **fields
        )


def cut(text: str, limit: int = FIELD_MAX) -> str:
    """`text`, or its first `limit` characters and `…[cut, N chars]`."""
    if len(text) <= limit:
        return text
    was = _CUT.search(text)  # cut before (a line rendered again): keep the first length
    return f"{text[:limit]}…[cut, {was.group(1) if was else len(text)} chars]"


def bounded(value: Any, limit: int = FIELD_MAX, depth: int = 0) -> Any:
    """`value` as it may be logged: strings cut to `limit` (URL credentials masked),
    containers to ITEMS_MAX items and DEPTH_MAX levels, anything else as cut text."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if value in _INT_RANGE else cut(str(value), limit)
    if isinstance(value, str):
        return cut(mask_urls(value) if "://" in value else value, limit)
    if isinstance(value, bytes | bytearray | memoryview):
        text = cut(repr(bytes(value[:limit])), limit)
        return text if len(value) <= limit else f"{text}…[cut, {len(value)} bytes]"
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return _bounded_items(value, limit, depth)
    return cut(mask_urls(repr(value)), limit)


def _bounded_items(value: Any, limit: int, depth: int) -> Any:
    size = len(value)
    if depth >= DEPTH_MAX:
        return f"…[{type(value).__name__} of {size} nested too deep]"
    more = f"…[{size - ITEMS_MAX} more]"
    if isinstance(value, Mapping):
        out = {}
        for n, (key, item) in enumerate(value.items()):
            if n == ITEMS_MAX:
                out["…"] = more
                break
            out[bounded(str(key), limit)] = bounded(item, limit, depth + 1)
        return out
    items = [bounded(item, limit, depth + 1) for item in itertools.islice(value, ITEMS_MAX)]
    return [*items, more] if size > ITEMS_MAX else items


def bound_fields(_logger: Any, _method: str, event_dict: Any) -> Any:
    """structlog processor: every field bounded (`bounded`); a traceback keeps its end."""
    out = {}
    for key, value in event_dict.items():
        if key == "exception" and isinstance(value, str) and len(value) > EXCEPTION_MAX:
            out[key] = f"…[cut, {len(value)} chars] {value[-EXCEPTION_MAX:]}"
        else:
            out[bounded(str(key))] = bounded(value)
    return out


class BoundedRenderer:
    """structlog renderer: the event as one JSON line (orjson) of at most LINE_MAX bytes,
    its newline included; a longer line is rendered again with fields cut to _SHORT
    characters, then with the naming fields only and `line_cut` (the bytes it had)."""

    def __call__(self, _logger: Any, _method: str, event_dict: Any) -> bytes:
        """The JSON bytes of `event_dict` (bounded by `bound_fields` already)."""
        line = _dumps(event_dict)
        if len(line) < LINE_MAX:
            return line
        short = {key: bounded(value, _SHORT) for key, value in event_dict.items()}
        short["line_cut"] = len(line)
        shorter = _dumps(short)
        if len(shorter) < LINE_MAX:
            return shorter
        naming = {key: short[key] for key in _NAMING if key in short}
        return _dumps({**naming, "line_cut": len(line)})


def _dumps(event_dict: Any) -> bytes:
    try:
        return orjson.dumps(event_dict, default=repr)
    except (orjson.JSONEncodeError, TypeError):  # a lone surrogate, say: not UTF-8
        return orjson.dumps(_utf8(event_dict), default=repr)


def _utf8(value: Any) -> Any:
    """`value` (bounded already) with what is not UTF-8 in its strings backslash-escaped."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_utf8(k): _utf8(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utf8(item) for item in value]
    return value


def get_logger(**context: Any) -> Any:
    """A structlog logger bound to `context`."""
    return structlog.get_logger("fenliu").bind(**context)
