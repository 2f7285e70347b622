"""The JSON Schemas of the API (docs/api/), for the tests that check answers against them.

Each file is one schema; a `$ref` from one file to another (shop.schema.json's `experiment`
is experiment.schema.json's report) resolves through the files' `$id`s, all registered.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import orjson
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

API = Path(__file__).resolve().parents[1] / "docs" / "api"


@cache
def _registry() -> Registry:  # type: ignore[type-arg]
    schemas = [orjson.loads(path.read_bytes()) for path in sorted(API.glob("*.schema.json"))]
    return Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas
    )


def api_schema(name: str) -> Draft202012Validator:
    """The validator of docs/api/NAME.schema.json (itself checked as a schema first)."""
    schema = orjson.loads((API / f"{name}.schema.json").read_bytes())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())
