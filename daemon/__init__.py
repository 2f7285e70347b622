"""Fenliu: the routing daemon (sans-I/O core in `daemon.core`, asyncio shell around it).

How the core loads (docs/architecture.md, The compiled core). It runs as plain Python, or
compiled by mypyc from the same source: `python -m daemon.tools.compile` (`make compile`,
the image's build) leaves the modules in `HOT` beside their `.py` in daemon/core as
extension modules, and Python's import system loads those instead of the source, as it
does for any extension module. To set `CORE`, importing this package asks the import system
which loader each hot module would get; it reads no file. Whether a build still matches its
source is checked where sources change, not here: `make compile` rebuilds, and the test
suite refuses a stale build (tests/core_build.py, `python -m daemon.tools.compile --check`).

`FENLIU_CORE=python` loads every core module from its `.py` even beside a build, through a
meta-path finder installed only then (and for a build cut short: compiled classes expect
compiled neighbours, so all or none); `FENLIU_CORE=compiled` makes a core without a whole
build an ImportError. `CORE` says which core runs, `CORE_NOTE` why when it is not the
compiled one. Both give the same outputs: tests/integration/test_compiled_core.py holds
them to the same digest.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
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
    "replies",
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


def _is_compiled(module: str) -> bool:
    spec = importlib.machinery.PathFinder.find_spec(f"daemon.core.{module}", [str(HERE)])
    return spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)


def _choose() -> tuple[str, str]:
    wanted = os.environ.get("FENLIU_CORE", "auto")
    if wanted not in ("auto", "python", "compiled"):
        raise ImportError(f"FENLIU_CORE={wanted!r}: expected auto, python or compiled")
    if wanted == "python":
        sys.meta_path.insert(0, _SourceFirst())
        return "python", "FENLIU_CORE=python"
    compiled = [module for module in HOT if _is_compiled(module)]
    if len(compiled) == len(HOT):
        return "compiled", ""
    if wanted == "compiled":
        raise ImportError(
            f"FENLIU_CORE=compiled, but {len(compiled)} of the {len(HOT)} core modules are compiled"
        )
    if compiled:  # a build cut short: compiled classes expect compiled neighbours
        sys.meta_path.insert(0, _SourceFirst())
        return "python", f"a build cut short ({len(compiled)} of {len(HOT)}): compile again"
    return "python", "not compiled (python -m daemon.tools.compile)"


CORE, CORE_NOTE = _choose()
