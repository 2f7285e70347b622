"""Compile the routing core's hot modules with mypyc, check or remove the compiled ones.

    python -m daemon.tools.compile           # build beside the sources, write compiled.json
    python -m daemon.tools.compile --check   # exit 1 if a source changed since, or cut short
    python -m daemon.tools.compile --clean   # remove them: the core runs as plain Python

mypyc turns the type-annotated modules of `daemon.HOT` into C extension modules built from
the same source, so the plain-Python core stays the fallback with identical outputs
(BENCHMARKS.md has the figures; docs/architecture.md, The compiled core, says when which
runs). Needs the `compiled` extra (mypy, setuptools) and a C compiler with the Python
headers. The build runs in a temporary folder and only the extension modules are copied
back, with the manifest: each source's hash, which `--check` compares.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from daemon import HERE, HOT

GROUP = "daemon.core.native"  # the shared library every compiled module links to
ROOT = HERE.parents[1]  # the folder holding the `daemon` and `topics` packages
MANIFEST = HERE / "compiled.json"  # the hash of each source a build was made from

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


def source_hash(module: str) -> str:
    """The sha256 of a core module's source."""
    return hashlib.sha256((HERE / f"{module}.py").read_bytes()).hexdigest()


def extension(name: str) -> Path:
    """Where a build leaves the extension module `name` of daemon/core."""
    return HERE / f"{name}{importlib.machinery.EXTENSION_SUFFIXES[0]}"


def compiled_files() -> list[Path]:
    """The extension modules a build leaves in daemon/core (what --clean removes)."""
    return [extension(name) for name in [*HOT, GROUP.rpartition(".")[2] + "__mypyc"]]


def clean() -> list[Path]:
    """Remove the compiled core; return what was removed."""
    gone = [path for path in [*compiled_files(), MANIFEST] if path.exists()]
    for path in gone:
        path.unlink()
    return gone


def problem() -> str | None:
    """What is wrong with the compiled core in daemon/core: a source changed since the
    build, or the build was cut short; None when it is whole and current, or absent. The
    test suite refuses to start on one (tests/core_build.py)."""
    present = [path for path in compiled_files() if path.exists()]
    if not present:
        return None
    if len(present) < len(compiled_files()):
        return (
            f"the compiled core in daemon/core has {len(present)} of its "
            f"{len(compiled_files())} files: make compile, or make uncompile for plain Python"
        )
    built = json.loads(MANIFEST.read_bytes()).get("sources", {}) if MANIFEST.exists() else {}
    changed = [f"daemon/core/{m}.py" for m in HOT if built.get(m) != source_hash(m)]
    if not changed:
        return None
    return (
        f"{', '.join(changed)} changed since the core was compiled, which would still run "
        "the old code: make compile, or make uncompile for plain Python"
    )


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
    manifest = {"sources": {m: source_hash(m) for m in HOT}}
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    """Entry point: build the compiled core, check it with --check, remove it with --clean."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--check", action="store_true", help="exit 1 when the build is stale or cut short"
    )
    action.add_argument("--clean", action="store_true", help="remove the compiled core")
    args = parser.parse_args(argv)
    if args.check:
        wrong = problem()
        built = "the compiled core matches its source" if compiled_files()[0].exists() else ""
        print(wrong or built or "not compiled: the core runs as plain Python")
        return 1 if wrong else 0
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
