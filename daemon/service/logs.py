"""structlog set up as its performance guide recommends: JSON lines rendered by orjson.

One event per line with a stable snake_case name, an ISO UTC timestamp, the level and
whatever context applies (shop_id, buyer_id, agent_id, topic, partition, offset). Secrets
are never passed to a logger: configuration objects redact them in their repr.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, BinaryIO

import orjson
import structlog


def configure_logging(level: str = "info", stream: BinaryIO | None = None) -> None:
    """Route structlog to JSON lines on `stream` (default stderr) at `level` and above."""
    out = stream or sys.stderr.buffer
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
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


class LibraryHandler(logging.Handler):
    """Library log records (aiokafka's, say) as JSON lines like ours: `event` "library_log".

    A library that repeats itself (aiokafka logs every reconnect attempt during an outage)
    is condensed: the same message again within `quiet_s` is counted, not written, and the
    next line written for it says how many were held back (`repeated`).
    """

    def __init__(self, quiet_s: float = 10.0) -> None:
        super().__init__()
        self.quiet_s = quiet_s
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record unless it repeats one written less than `quiet_s` ago."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        key = (record.name, message)
        now = time.monotonic()
        written, held = self._last.get(key, (-self.quiet_s, 0))
        if now - written < self.quiet_s:
            self._last[key] = (written, held + 1)
            return
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = (now, 0)
        log = structlog.get_logger("fenliu").bind(logger=record.name)
        fields: dict[str, Any] = {"message": message}
        if held:
            fields["repeated"] = held
        if record.exc_info and record.exc_info[1] is not None:
            fields["error"] = repr(record.exc_info[1])
        level = record.levelname.lower()
        getattr(log, level if level in ("warning", "error", "critical") else "info")(
            "library_log", **fields
        )


def get_logger(**context: Any) -> Any:
    """A structlog logger bound to `context`."""
    return structlog.get_logger("fenliu").bind(**context)
