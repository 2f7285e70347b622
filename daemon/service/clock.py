"""The daemon's clock (the dev stack reads the same one)."""

from __future__ import annotations

import time


def wall_ms() -> int:
    """The daemon's clock: epoch milliseconds."""
    return time.time_ns() // 1_000_000
