"""Fenliu: the routing daemon (sans-I/O core in `daemon.core`, asyncio shell around it).

How the core loads. It runs as plain Python, or compiled by mypyc from the same source
(`python -m daemon.tools.compile`, which `make setup` and the image run): the modules in
`HOT` then lie beside their `.py` in daemon/core as extension modules, with
daemon/core/compiled.json holding the hash of each source they were built from. Python
would import an extension module in preference to its source even after the source
changed, so this package (imported before daemon.core, which itself does no I/O) checks the
hashes first: when any source changed since the build, or `FENLIU_CORE=python` is set,
every core module is loaded from its `.py` (all or none: compiled classes expect compiled
neighbours). `FENLIU_CORE=compiled` makes a missing or stale build an ImportError instead.
`CORE` says which one runs, `CORE_NOTE` why when it is not the compiled one. Both give the
same outputs: tests/integration/test_compiled_core.py holds them to the same digest.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

HOT = (
    "arrivals",
    "candidate",
    "capacity",
    "effects",
    "engine",
    "estimate",
    "line",
    "model",
    "patience",
    "queues",
    "routing",
    "rules",
    "sessions",
    "shop",
    "slots",
    "state",
    "stats",
    "timers",
)
"""The modules mypyc compiles: what every event runs through (not the pydantic config, the
snapshots, or the exceptions, which mypyc cannot subclass from ValueError)."""

HERE = Path(__file__).parent / "core"
MANIFEST = HERE / "compiled.json"


def source_hash(module: str) -> str:
    """The sha256 of a core module's source."""
    return hashlib.sha256((HERE / f"{module}.py").read_bytes()).hexdigest()


def build_tag() -> str:
    """The interpreter a build is for (an extension module runs on that one only)."""
    return f"{sys.implementation.cache_tag}-{sys.platform}"


def extension(name: str) -> Path:
    """Where a build leaves the extension module `name` of daemon/core."""
    return HERE / f"{name}{importlib.machinery.EXTENSION_SUFFIXES[0]}"


def compiled_problem() -> str | None:
    """Why the compiled core cannot be used here, or None when it can."""
    if not MANIFEST.exists():
        return "not compiled (python -m daemon.tools.compile)"
    manifest = json.loads(MANIFEST.read_bytes())
    if manifest.get("python") != build_tag():
        return f"compiled for {manifest.get('python')}, this is {build_tag()}"
    for module in HOT:
        if not extension(module).exists():
            return f"{extension(module).name} is missing"
        if manifest.get("sources", {}).get(module) != source_hash(module):
            return f"{module}.py changed since it was compiled (python -m daemon.tools.compile)"
    return None


class _SourceFirst:
    """A meta-path finder that loads the core's modules from their `.py` files."""

    @staticmethod
    def find_spec(
        name: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        prefix, _, module = name.rpartition(".")
        if prefix != "daemon.core":
            return None
        source = HERE / f"{module}.py"
        return importlib.util.spec_from_file_location(name, source) if source.exists() else None


def _choose() -> tuple[str, str]:
    wanted = os.environ.get("FENLIU_CORE", "auto")
    if wanted not in ("auto", "python", "compiled"):
        raise ImportError(f"FENLIU_CORE={wanted!r}: expected auto, python or compiled")
    problem = "FENLIU_CORE=python" if wanted == "python" else compiled_problem()
    if problem is None:
        return "compiled", ""
    if wanted == "compiled":
        raise ImportError(f"FENLIU_CORE=compiled, but the compiled core is {problem}")
    sys.meta_path.insert(0, _SourceFirst())
    return "python", problem


CORE, CORE_NOTE = _choose()
