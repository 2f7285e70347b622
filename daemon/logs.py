"""structlog set up as its performance guide recommends: JSON lines rendered by orjson.

One event per line with a stable snake_case name, an ISO UTC timestamp, the level and
whatever context applies (shop_id, buyer_id, agent_id, topic, partition, offset). Secrets
are never passed to a logger: configuration objects redact them in their repr.
"""

from __future__ import annotations

import logging
import sys
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


def get_logger(**context: Any) -> Any:
    """A structlog logger bound to `context`."""
    return structlog.get_logger("fenliu").bind(**context)
