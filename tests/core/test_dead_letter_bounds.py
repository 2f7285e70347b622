"""Dead letters always fit (contract §1.3 `rejected`, topics.excerpt).

Pins: `raw`, the echoed key (`shop_id`) and `error` are at most their limit in the dead
letter's own JSON whatever the record (huge, control characters, multi-byte text, not
UTF-8); a UTF-8 excerpt is cut on a character boundary and is the longest prefix that fits;
a cut one carries `raw_truncated`/`key_truncated` with the original's size and SHA-256; one
that fits is kept whole, with none of those fields on the wire; every dead letter passes
the dead-letter schema, whose record limit is 64 KiB.
"""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topics.codec import MAX_RECORD_BYTES, encode, rejected_for
from topics.events import Rejected
from topics.excerpt import MAX_ERROR_BYTES, MAX_KEY_BYTES, MAX_RAW_BYTES, cut_text
from topics.schema_check import check_record


def _letter(value: bytes | None, key: bytes | None = b"demo", error: str = "bad") -> Rejected:
    return rejected_for(
        error, source_topic="fenliu.inquiries", partition=3, offset=41, value=value, key=key,
        now_ms=7, kind="invalid",
    )  # fmt: skip


def _json_bytes(text: str) -> int:
    return len(orjson.dumps(text)) - 2


def _fits_the_schema(event: Rejected) -> None:
    value = encode(event)
    assert len(value) <= MAX_RECORD_BYTES
    key = None if event.shop_id is None else event.shop_id.encode()
    assert check_record("dead_letter", key, value) is None


@pytest.mark.parametrize(
    ("what", "value"),
    [
        ("200 KB of control characters", b"\x01\x1f" * 100_000),
        ("900 KB of pasted text", ("客服 transcript line\n" * 40_000).encode()[:900_000]),
        ("4 MB of emoji", "😀".encode() * 1_000_000),
        ("quotes and backslashes", b'"\\' * 50_000),
    ],
)
def test_a_huge_utf8_value_is_cut_on_a_character_boundary_with_size_and_hash(
    what: str, value: bytes
) -> None:
    original = value.decode(errors="ignore")
    event = _letter(value)
    assert event.raw_encoding == "utf-8"
    assert event.raw_truncated, what
    assert _json_bytes(event.raw) <= MAX_RAW_BYTES
    assert original.startswith(event.raw)
    assert value.startswith(event.raw.encode())
    assert _json_bytes(original[: len(event.raw) + 1]) > MAX_RAW_BYTES, "the longest prefix"
    assert event.raw_size == len(value)
    assert event.raw_sha256 == hashlib.sha256(value).hexdigest()
    wire = orjson.loads(encode(event))
    assert (wire["raw_truncated"], wire["raw_size"]) == (True, len(value))
    assert wire["raw_sha256"] == event.raw_sha256
    _fits_the_schema(event)


def test_a_cut_value_not_utf8_holds_its_first_12_kib_in_base64() -> None:
    value = b"\xff" + bytes(range(256)) * 8_000  # 2 MB, not UTF-8
    event = _letter(value)
    assert (event.raw_encoding, event.raw_truncated) == ("base64", True)
    assert len(event.raw) == MAX_RAW_BYTES
    assert base64.b64decode(event.raw) == value[: MAX_RAW_BYTES // 4 * 3]
    assert (event.raw_size, event.raw_sha256) == (len(value), hashlib.sha256(value).hexdigest())
    _fits_the_schema(event)


@pytest.mark.parametrize(
    ("value", "cut"),
    [
        (b"a" * MAX_RAW_BYTES, False),
        (b"a" * (MAX_RAW_BYTES + 1), True),
        (b"\x01" * (MAX_RAW_BYTES // 6), False),  # \u0001: six bytes in JSON
        (b"\x01" * (MAX_RAW_BYTES // 6 + 1), True),
        (b"\xff" * (MAX_RAW_BYTES // 4 * 3), False),
        (b"\xff" * (MAX_RAW_BYTES // 4 * 3 + 1), True),
    ],
)
def test_the_raw_limit_is_exact_in_the_dead_letters_json(value: bytes, cut: bool) -> None:
    event = _letter(value)
    assert event.raw_truncated is cut
    raw = base64.b64decode(event.raw) if event.raw_encoding == "base64" else event.raw.encode()
    assert (raw == value) is not cut


def test_a_value_that_fits_is_kept_whole_with_no_cut_fields_on_the_wire() -> None:
    value = b'{"type":"inquiry","id":"i1"}'
    event = _letter(value)
    assert (event.raw, event.raw_truncated, event.raw_size, event.raw_sha256) == (
        value.decode(), False, None, None,
    )  # fmt: skip
    wire = orjson.loads(encode(event))
    cut_fields = {"raw_truncated", "raw_size", "raw_sha256", "key_truncated", "key_size"}
    assert not cut_fields & set(wire)
    assert "key_sha256" not in wire


@pytest.mark.parametrize("key", [b"k" * 100_000, "店铺".encode() * 20_000, b"\x07" * 100_000])
def test_a_huge_key_is_cut_in_shop_id_and_the_dead_letters_own_key(key: bytes) -> None:
    event = _letter(b"{}", key=key)
    assert event.shop_id is not None
    assert _json_bytes(event.shop_id) <= MAX_KEY_BYTES
    assert key.startswith(event.shop_id.encode())
    assert (event.key_truncated, event.key_size) == (True, len(key))
    assert event.key_sha256 == hashlib.sha256(key).hexdigest()
    wire = orjson.loads(encode(event))
    assert (wire["key_truncated"], wire["key_size"]) == (True, len(key))
    _fits_the_schema(event)


def test_a_key_not_utf8_is_not_echoed_whatever_its_size() -> None:
    event = _letter(b"{}", key=b"\xff" * 100_000)
    assert (event.shop_id, event.key_truncated, event.key_size) == (None, False, None)
    _fits_the_schema(event)


def test_a_long_error_is_cut_and_says_so() -> None:
    event = _letter(b"{}", error="x" * 5_000)
    assert _json_bytes(event.error) <= MAX_ERROR_BYTES
    assert event.error.endswith("...")
    assert _letter(b"{}", error="short").error == "short"


def test_the_worst_dead_letter_still_fits_64_kib() -> None:
    """Every excerpt at its worst at once, with a 249-character topic name."""
    topic = "t" * 249
    event = rejected_for(
        "\x01" * 10_000, source_topic=topic, partition=2**31 - 1, offset=2**63 - 1,
        value=b"\x01" * 1_000_000, key=b"\x01" * 1_000_000, now_ms=2**63 - 1, kind="misrouted",
    )  # fmt: skip
    _fits_the_schema(event)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=3_000), limit=st.integers(0, 4_000))
def test_cut_text_is_the_longest_prefix_that_fits(text: str, limit: int) -> None:
    cut = cut_text(text, limit)
    assert text.startswith(cut)
    assert _json_bytes(cut) <= limit
    if len(cut) < len(text):
        assert _json_bytes(text[: len(cut) + 1]) > limit


@settings(max_examples=150, deadline=None)
@given(
    value=st.none() | st.binary(max_size=40_000) | st.text(max_size=20_000).map(str.encode),
    key=st.none() | st.binary(max_size=3_000) | st.text(max_size=1_500).map(str.encode),
)
def test_any_record_makes_a_valid_dead_letter_that_keeps_what_fits(
    value: bytes | None, key: bytes | None
) -> None:
    event = _letter(value, key=key)
    _fits_the_schema(event)
    if not event.raw_truncated:
        raw = base64.b64decode(event.raw) if event.raw_encoding == "base64" else event.raw.encode()
        assert raw == (value or b"")
    if event.shop_id is not None and not event.key_truncated:
        assert event.shop_id.encode() == key
