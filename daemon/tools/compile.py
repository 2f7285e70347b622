"""Compile the routing core's hot modules with mypyc, or remove the compiled ones.

    python -m daemon.tools.compile           # build beside the sources, write compiled.json
    python -m daemon.tools.compile --clean   # remove them: the core runs as plain Python

mypyc turns the type-annotated modules of `daemon.core.HOT` into C extension modules built
from the same source, so the plain-Python core stays the fallback with identical outputs
(daemon/__init__.py picks one; BENCHMARKS.md has the figures). Needs the `compiled`
extra (mypy, setuptools) and a C compiler with the Python headers. The build runs in a
temporary folder and only the extension modules and the manifest are copied back.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from daemon import HERE, HOT, MANIFEST, build_tag, extension, source_hash

GROUP = "daemon.core.native"  # the shared library every compiled module links to
ROOT = HERE.parents[1]  # the folder holding the `daemon` and `topics` packages

_SETUP = """\
import sys
from mypyc.build import mypycify
from setuptools import setup

setup(
    name="fenliu-core",
    script_args=["build_ext", "--inplace", "--build-temp", sys.argv[1]],
    ext_modules=mypycify(
        ["--config-file", sys.argv[2], "--no-warn-unused-configs", *sys.argv[3:]],
        opt_level="3",
        group_name="{group}",
        target_dir=sys.argv[1],
    ),
)
"""


def compiled_files() -> list[Path]:
    """The extension modules a build leaves in daemon/core (what --clean removes)."""
    return [extension(name) for name in [*HOT, GROUP.rpartition(".")[2] + "__mypyc"]]


def clean() -> list[Path]:
    """Remove the compiled core; return what was removed."""
    gone = [path for path in [*compiled_files(), MANIFEST] if path.exists()]
    for path in gone:
        path.unlink()
    return gone


def build() -> float:
    """Compile `HOT` in a scratch copy of the packages; return the seconds it took."""
    started = time.monotonic()
    clean()
    with tempfile.TemporaryDirectory(prefix="fenliu-mypyc-") as scratch:
        work = Path(scratch)
        for package in ("daemon", "topics"):
            shutil.copytree(
                ROOT / package,
                work / package,
                ignore=shutil.ignore_patterns("__pycache__", "*.so", "compiled.json"),
            )
        (work / "setup_core.py").write_text(_SETUP.format(group=GROUP))
        sources = [f"daemon/core/{module}.py" for module in HOT]
        config = ROOT / "pyproject.toml"
        subprocess.run(
            [sys.executable, "setup_core.py", str(work / "build"), str(config), *sources],
            cwd=work,
            check=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        for target in compiled_files():
            shutil.copy2(work / "daemon" / "core" / target.name, target)
    manifest = {"python": build_tag(), "sources": {m: source_hash(m) for m in HOT}}
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    """Entry point: build the compiled core, or remove it with --clean."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", action="store_true", help="remove the compiled core")
    args = parser.parse_args(argv)
    if args.clean:
        removed = clean()
        print(f"removed {len(removed)} compiled files; the core runs as plain Python")
        return 0
    print(f"compiling daemon.core ({len(HOT)} modules) with mypyc …", flush=True)
    try:
        seconds = build()
    except (subprocess.CalledProcessError, OSError) as exc:
        clean()
        print(f"compiling the core failed ({exc}); it runs as plain Python", file=sys.stderr)
        return 1
    print(f"compiled in {seconds:.0f}s: {len(HOT)} modules in {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
