"""Log lines are bounded (contract §6): library records come out as JSON lines like ours with
repeats condensed, every field is cut, no line exceeds 4 KiB whatever is logged, URL
credentials are masked, and rejections are logged once per pattern with a count."""

from __future__ import annotations

import io
import logging
import ssl
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord
from structlog.testing import capture_logs

from daemon.service.logs import (
    DEPTH_MAX,
    FIELD_MAX,
    ITEMS_MAX,
    LINE_MAX,
    LibraryHandler,
    Repeats,
    configure_logging,
    get_logger,
)
from daemon.service.record_log import Rejections, dead_letter
from topics.events import Rejected


def test_library_warnings_are_json_lines_and_repeats_are_counted() -> None:
    stream = io.BytesIO()
    configure_logging("info", stream=stream)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, LibraryHandler)
    now = [0.0]
    handler._repeats = Repeats(0.2, clock=lambda: now[0])
    kafka = logging.getLogger("aiokafka.conn")
    for _ in range(5):
        kafka.warning("Unable connect to node with id %s", 111)
    logging.getLogger("aiokafka").info("chatter below WARNING is dropped")
    now[0] += 1.0  # time passes
    kafka.warning("Unable connect to node with id %s", 111)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["event"], e["logger"], e["level"]) for e in lines] == [
        ("library_log", "aiokafka.conn", "warning"),
        ("library_log", "aiokafka.conn", "warning"),
    ]
    assert lines[0]["message"] == "Unable connect to node with id 111"
    assert "repeated" not in lines[0] and lines[1]["repeated"] == 4


# --- bounded lines (contract §6: long fields cut, no line over 4 KiB) -------------------------


def _rendered(**fields: object) -> tuple[bytes, dict[str, object]]:
    """One warning through the real configuration: the bytes written, and them parsed."""
    stream = io.BytesIO()
    configure_logging("info", stream=stream)
    get_logger().warning("event_rejected", **fields)
    raw = stream.getvalue()
    assert raw.count(b"\n") == 1 and raw.endswith(b"\n"), raw[:200]
    return raw, orjson.loads(raw)


def test_a_100_kb_key_is_cut_to_a_bounded_field_that_says_how_long_it_was() -> None:
    raw, line = _rendered(key="k" * 100_000, topic="fenliu.inquiries")
    assert len(raw) <= LINE_MAX
    assert line["key"] == "k" * FIELD_MAX + "…[cut, 100000 chars]"
    assert line["topic"] == "fenliu.inquiries" and line["event"] == "event_rejected"


def test_control_characters_stay_escaped_on_one_line_under_4_kib() -> None:
    """Each control character escapes to six bytes: many cut fields of them still exceed
    the line limit, so the line is rendered again with shorter fields."""
    nasty = "".join(chr(c) for c in range(32)) * 100
    raw, line = _rendered(**{f"f{n}": nasty for n in range(8)}, shop_id="s1")
    assert len(raw) <= LINE_MAX
    assert line["shop_id"] == "s1" and line["level"] == "warning"
    assert isinstance(line["line_cut"], int) and line["line_cut"] > LINE_MAX  # as it would be
    assert str(line["f0"]).startswith(nasty[:64]) and "…[cut, 3200 chars]" in str(line["f0"])


def test_a_line_of_too_many_fields_keeps_the_naming_ones() -> None:
    raw, line = _rendered(**{f"f{n}": "x" * 400 for n in range(200)}, shop_id="s1", offset=7)
    assert len(raw) <= LINE_MAX
    assert {k: line[k] for k in ("event", "shop_id", "offset")} == {
        "event": "event_rejected", "shop_id": "s1", "offset": 7,
    }  # fmt: skip
    assert "f0" not in line and isinstance(line["line_cut"], int)


def test_deep_nesting_wide_containers_bytes_and_odd_values_are_bounded() -> None:
    deep: object = "bottom"
    for _ in range(200):
        deep = {"d": deep}
    raw, line = _rendered(
        deep=deep,
        wide=list(range(10_000)),
        mapping={str(n): n for n in range(100)},
        blob=b"\x00\xff" * 50_000,
        huge=10**40,
        odd=object(),
        surrogate="\udc80" * 10,
    )
    assert len(raw) <= LINE_MAX
    level: object = line["deep"]
    for _ in range(DEPTH_MAX):
        assert isinstance(level, dict)
        level = level["d"]
    assert level == "…[dict of 1 nested too deep]"
    assert line["wide"] == [*range(ITEMS_MAX), f"…[{10_000 - ITEMS_MAX} more]"]
    assert len(line["mapping"]) == ITEMS_MAX + 1  # type: ignore[arg-type]
    assert str(line["blob"]).endswith("…[cut, 100000 bytes]")
    assert line["huge"] == str(10**40)
    assert str(line["odd"]).startswith("<object object at")


def _fail(message: str) -> None:
    raise ValueError(message)


def test_a_traceback_keeps_its_end_where_the_error_is() -> None:
    stream = io.BytesIO()
    configure_logging("info", stream=stream)
    try:
        _fail("x" * 10_000 + " the end")
    except ValueError:
        get_logger().exception("shop_quarantined", shop_id="s1")
    raw = stream.getvalue()
    line = orjson.loads(raw)
    assert len(raw) <= LINE_MAX
    assert line["exception"].endswith("the end") and line["exception"].startswith("…[cut, ")


def test_credentials_in_any_logged_url_are_masked() -> None:
    text = "cannot reach rediss://fenliu:hunter2@h:6380/0?ssl_password=hunter2&db=1 (retry)"
    raw, line = _rendered(error=text, nested={"urls": [text]})
    assert b"hunter2" not in raw
    assert line["error"] == (
        "cannot reach rediss://fenliu:***@h:6380/0?ssl_password=***&db=1 (retry)"
    )


def test_library_lines_are_bounded_too_and_name_a_tls_failure() -> None:
    stream = io.BytesIO()
    configure_logging("info", stream=stream)
    kafka = logging.getLogger("aiokafka")
    kafka.warning("Unable to decode %s", "v" * 100_000)
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] no (_ssl.c:1)")
    error.verify_message = "self-signed certificate in certificate chain"
    kafka.error('Unable connect to "%s:%s": %s', "127.0.0.1", 9093, error)
    kafka.error('Unable connect to "%s:%s": %s', "127.0.0.1", 9094, ConnectionRefusedError())
    raws = stream.getvalue().splitlines()
    assert all(len(raw) < LINE_MAX for raw in raws)
    cut_line, tls_line, refused_line = (orjson.loads(raw) for raw in raws)
    assert str(cut_line["message"]).endswith("…[cut, 100017 chars]")
    reason = "certificate verify failed: self-signed certificate in certificate chain"
    assert tls_line["tls"] == reason
    assert "tls" not in refused_line


# --- rejections logged once per pattern (contract §6: repeats counted) -------------------------


def _record(topic: str, offset: int, value: bytes = b"not json") -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic=topic, partition=0, offset=offset, timestamp=0, timestamp_type=0,
        key=b"s1", value=value, checksum=None, serialized_key_size=2,
        serialized_value_size=len(value), headers=(),
    )  # fmt: skip


def test_rejections_are_logged_once_per_topic_and_kind_per_interval_with_a_count() -> None:
    """6,030 bad records: every one is dead-lettered, one line per pattern per 10 s, and the
    pattern's next line counts the repeats held back."""
    now = [0.0]
    with capture_logs() as logs:
        rejections = Rejections(get_logger(), clock=lambda: now[0])
        letters = [
            dead_letter(_record("in", n), "not JSON", "invalid", 1, rejections) for n in range(6000)
        ]
        letters += [
            dead_letter(_record("msgs", n), "unknown shop", "unknown_shop", 1, rejections)
            for n in range(30)
        ]
        now[0] = 9.9  # still quiet
        dead_letter(_record("in", 6000), "not JSON", "invalid", 1, rejections)
        now[0] = 10.0
        dead_letter(_record("in", 6001), "not JSON", "invalid", 1, rejections)
        dead_letter(_record("in", 6002), "not JSON", "invalid", 1, rejections)
    assert len(letters) == 6030 and all(isinstance(d, Rejected) for d in letters)
    assert [(e["topic"], e["kind"], e["offset"], e.get("repeated")) for e in logs] == [
        ("in", "invalid", 0, None),
        ("msgs", "unknown_shop", 0, None),
        ("in", "invalid", 6001, 6000),
    ]
    assert logs[0]["reason"] == "not JSON" and logs[0]["shop_id"] == "s1"
