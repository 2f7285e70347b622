"""Library log records come out as JSON lines like ours, and repeats are condensed."""

from __future__ import annotations

import io
import logging

import orjson

from daemon.service.logs import LibraryHandler, configure_logging


def test_library_warnings_are_json_lines_and_repeats_are_counted() -> None:
    stream = io.BytesIO()
    configure_logging("info", stream=stream)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, LibraryHandler)
    handler.quiet_s = 0.2
    kafka = logging.getLogger("aiokafka.conn")
    for _ in range(5):
        kafka.warning("Unable connect to node with id %s", 111)
    logging.getLogger("aiokafka").info("chatter below WARNING is dropped")
    handler._last = {k: (w - 1.0, held) for k, (w, held) in handler._last.items()}  # time passes
    kafka.warning("Unable connect to node with id %s", 111)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["event"], e["logger"], e["level"]) for e in lines] == [
        ("library_log", "aiokafka.conn", "warning"),
        ("library_log", "aiokafka.conn", "warning"),
    ]
    assert lines[0]["message"] == "Unable connect to node with id 111"
    assert "repeated" not in lines[0] and lines[1]["repeated"] == 4
