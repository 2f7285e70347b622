"""Configuration problems and how they are worded for people (file: key: problem).

`validate` runs a pydantic model over one file's TOML data and turns its errors into
`ConfigProblem`s with dotted TOML keys (``agents[3].weight``) and plain sentences. A problem
with a value says what was given, quoted and cut to 40 characters
(``mode: must be one of 'average', 'weighted', 'efficiency' or 'conversion' (got
'fastest')``), unless the key or the value may hold a secret (a password, token or secret
key, a URL with credentials): those values are never repeated.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

FILE_KEY = "(file)"
TOP_KEY = "(top level)"


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in one file, under one key."""

    file: Path
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


class ConfigError(Exception):
    """The configuration is not valid; `problems` lists everything found, in file order."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# --- wording pydantic's errors -----------------------------------------------------------------

_LIST, _TABLE = 'must be a list, such as ["a", "b"]', "must be a table"
_WORDING = {  # pydantic error type -> plain sentence, formatted with the error's context
    "missing": "required key is missing",
    **dict.fromkeys(("int_type", "int_parsing"), "must be an integer"),
    "int_from_float": "must be a whole number",
    **dict.fromkeys(("float_type", "float_parsing"), "must be a number"),
    "finite_number": "must be a finite number",
    **dict.fromkeys(("bool_type", "bool_parsing"), "must be true or false"),
    "string_type": "must be a string (in quotes)",
    "path_type": "must be a path (a string in quotes)",
    **dict.fromkeys(("tuple_type", "list_type"), _LIST),
    **dict.fromkeys(("model_type", "model_attributes_type", "dict_type"), _TABLE),
    **dict.fromkeys(("enum", "literal_error"), "must be one of {expected}"),
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters long",
    "too_short": "needs at least {min_length} item(s)",
    **dict.fromkeys(("value_error", "assertion_error"), "{error}"),
}
_HINTS = {  # (key without list indices, error type) -> message
    ("id", "missing"): "required key is missing: the shop id, as events carry it in shop_id",
    ("agents", "missing"): "required key is missing: a shop has at least one [[agents]] table",
    ("agents", "too_short"): "a shop needs at least one agent ([[agents]])",
    ("groups", "missing"): "required key is missing: a shop has at least one [[groups]] table",
    ("groups", "too_short"): "a shop needs at least one group ([[groups]])",
    ("groups.agents", "too_short"): "a group needs at least one agent",
}


# Problems that are not about a value: a key missing, a key unknown (it is named already,
# and a value under a misspelled key may well be a secret), a list or string too short.
_NOT_ABOUT_THE_VALUE = {"missing", "extra_forbidden", "too_short", "string_too_short"}
_SECRET_KEY = re.compile(r"pass(word|wd|phrase)?|token|secret|credential|private|api_?key", re.I)
_SHOWN = 40  # characters of a value echoed in a problem


def _secret(loc: Sequence[int | str], value: object) -> bool:
    """Whether a value must not be echoed: its key names a secret, or it is (or is under a
    key named like) a URL that may carry credentials: user info or query arguments
    (`redis://:pw@h`, `?password=`)."""
    names = [part.lower() for part in loc if isinstance(part, str)]
    if any(_SECRET_KEY.search(name) for name in names):
        return True
    if not isinstance(value, str):
        return False
    url = "://" in value or any("url" in name for name in names)
    return url and ("@" in value or "?" in value)


def _shown(value: object) -> str:
    """A value as a problem quotes it: repr (TOML's spelling for booleans and dates), cut
    to `_SHOWN` characters with an ellipsis."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dt.date | dt.time):
        text = value.isoformat()
    else:
        text = repr(value)
    if len(text) <= _SHOWN:
        return text
    if isinstance(value, str):  # keep the closing quote
        return text[: _SHOWN - 2] + "…" + text[-1]
    return text[: _SHOWN - 1] + "…"


def _with_value(message: str, err: ErrorDetails) -> str:
    """`message` with the value that caused it, ``(got 'ten')``, where that helps: not for a
    problem about no value or a whole table, a secret, or a value the validator's sentence
    quotes already."""
    loc, value = err["loc"], err.get("input")
    if err["type"] in _NOT_ABOUT_THE_VALUE or "input" not in err or not loc:
        return message
    if isinstance(value, dict) and err["type"] in ("value_error", "assertion_error"):
        return message  # a table's own validator: the problem is in its sentence
    if _secret(loc, value):
        return message
    shown = _shown(value)
    own_sentence = err["type"] in ("value_error", "assertion_error")
    if own_sentence and re.search(rf"(?<![\w.']){re.escape(shown)}(?![\w.'])", message):
        return message  # the validator quotes the value already ('3days' is not a duration)
    return f"{message} (got {shown})"


def _key(loc: Sequence[int | str]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or TOP_KEY


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    found = (_model_in(arg) for arg in get_args(annotation))
    return next((m for m in found if m is not None), None)


def _known_keys(model: type[BaseModel] | None, loc: Sequence[int | str]) -> list[str]:
    for part in loc:
        if isinstance(part, str) and model is not None:
            field = model.model_fields.get(part)
            model = _model_in(field.annotation) if field else None
    return list(model.model_fields) if model else []


def _message(err: ErrorDetails, model: type[BaseModel]) -> str:
    kind, loc = err["type"], err["loc"]
    hint = _HINTS.get((".".join(p for p in loc if isinstance(p, str)), kind))
    if hint:
        return hint
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(model, loc[:-1]), n=1)
        suggestion = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key (not part of the configuration){suggestion}"
    ctx = {k: f"{v:g}" if isinstance(v, float) else v for k, v in err.get("ctx", {}).items()}
    message = _WORDING[kind].format(**ctx) if kind in _WORDING else err["msg"]
    return _with_value(message, err)


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: dict[str, Any], file: Path) -> M | list[ConfigProblem]:
    """Validate one file's data with `model`, or return its problems worded for people."""
    try:
        return model.model_validate(data, context={"defer_references": True})
    except ValidationError as exc:
        errors = exc.errors()
    # pydantic counts only valid items towards a list's min_length: when items are wrong, a
    # "too short" for the list itself is noise.
    inner = {e["loc"][:n] for e in errors for n in range(len(e["loc"]))}
    errors = [e for e in errors if e["type"] != "too_short" or e["loc"] not in inner]
    return [ConfigProblem(file, _key(e["loc"]), _message(e, model)) for e in errors]
