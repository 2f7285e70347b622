"""Configuration problems and how they are worded for people (file: key: problem).

`validate` runs a pydantic model over one file's TOML data and turns its errors into
`ConfigProblem`s with dotted TOML keys (``agents[3].weight``) and plain sentences.
"""

from __future__ import annotations

import difflib
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
    return _WORDING[kind].format(**ctx) if kind in _WORDING else err["msg"]


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
