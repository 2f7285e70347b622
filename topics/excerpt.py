"""Bounded excerpts of a refused record, for its dead letter (contract §1.3 `rejected`).

A dead letter always fits the broker, whatever the record it describes: it carries at most
`MAX_RAW_BYTES` of the record value, `MAX_KEY_BYTES` of its key and `MAX_ERROR_BYTES` of the
error sentence, each measured in the dead letter's own JSON (escapes included: a control
character costs six bytes there), so a dead letter stays under 64 KiB with any topic name.
The whole record stays in its source topic, at the partition and offset the dead letter
names; a cut excerpt says so (`truncated`), with the size and SHA-256 of the original.

- A UTF-8 value (or key) is cut on a character boundary: the excerpt is the longest prefix
  whose JSON string form is at most the limit.
- A value that is not UTF-8 is base64: the excerpt encodes at most 12 KiB of the original
  bytes, which is 16 KiB of base64 text.
- A key that is not UTF-8 is not echoed at all (the dead letter's `shop_id` is null).

Only refused records pay for this; a small value (at most a sixth of the limit) is taken
whole without measuring.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Final, Literal

import orjson

__all__ = [
    "MAX_ERROR_BYTES",
    "MAX_KEY_BYTES",
    "MAX_RAW_BYTES",
    "Excerpt",
    "cut_text",
    "error_excerpt",
    "key_excerpt",
    "value_excerpt",
]

MAX_RAW_BYTES: Final = 16_384
"""Most bytes of `raw` in the dead letter's JSON (16 KiB)."""
MAX_KEY_BYTES: Final = 1_024
"""Most bytes of an echoed record key (`shop_id`) in the dead letter's JSON: far above any
valid shop id (128 characters), well under the contract's 16 KiB."""
MAX_ERROR_BYTES: Final = 1_024
"""Most bytes of `error` in the dead letter's JSON."""

_WIDEST_ESCAPE: Final = 6  # "\u001f": the most bytes one character takes in JSON
_BASE64_BYTES: Final = MAX_RAW_BYTES // 4 * 3  # 12 KiB of bytes are 16 KiB of base64
_CUT_MARK: Final = "..."

Encoding = Literal["utf-8", "base64"]


@dataclass(frozen=True, slots=True)
class Excerpt:
    """What a dead letter echoes of a value or key: `text`, and when it is cut, the size
    (bytes) and SHA-256 (hex) of the original."""

    text: str
    truncated: bool = False
    size: int | None = None
    sha256: str | None = None


def _json_bytes(text: str) -> int:
    """Bytes of `text` as a JSON string, quotes excluded."""
    return len(orjson.dumps(text)) - 2


def cut_text(text: str, limit: int) -> str:
    """The longest prefix of `text` whose JSON string form is at most `limit` bytes."""
    if len(text) * _WIDEST_ESCAPE <= limit:
        return text
    head = text[:limit]  # every character takes at least one byte
    if _json_bytes(head) <= limit:
        return head
    fits, too_long = 0, len(head)
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if _json_bytes(head[:middle]) <= limit:
            fits = middle
        else:
            too_long = middle
    return head[:fits]


def _cut(original: bytes, text: str) -> Excerpt:
    return Excerpt(text, True, len(original), hashlib.sha256(original).hexdigest())


def value_excerpt(value: bytes) -> tuple[Excerpt, Encoding]:
    """A record value as `raw`: text when it is UTF-8, else base64; cut to MAX_RAW_BYTES."""
    try:
        text = value.decode()
    except UnicodeDecodeError:
        if len(value) <= _BASE64_BYTES:
            return Excerpt(base64.b64encode(value).decode("ascii")), "base64"
        head = base64.b64encode(value[:_BASE64_BYTES]).decode("ascii")
        return _cut(value, head), "base64"
    cut = cut_text(text, MAX_RAW_BYTES)
    return (Excerpt(text) if len(cut) == len(text) else _cut(value, cut)), "utf-8"


def key_excerpt(key: bytes | None) -> Excerpt | None:
    """A record key as the dead letter's `shop_id`: None when it is missing or not UTF-8,
    else its text cut to MAX_KEY_BYTES."""
    if key is None:
        return None
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return None
    cut = cut_text(text, MAX_KEY_BYTES)
    return Excerpt(text) if len(cut) == len(text) else _cut(key, cut)


def error_excerpt(error: str) -> str:
    """An error sentence cut to MAX_ERROR_BYTES (ending in "..." when cut)."""
    cut = cut_text(error, MAX_ERROR_BYTES)
    if len(cut) == len(error):
        return error
    return cut_text(error, MAX_ERROR_BYTES - len(_CUT_MARK)) + _CUT_MARK
