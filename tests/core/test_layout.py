"""The folder is the architecture (house rule 15, docs/development.md): what runs in production
(core, config, service) imports nothing of the operator tools, the dev stack or the lab, and the
service's modules import each other without a cycle. Imports are read with `ast`, lazy ones
included."""

from __future__ import annotations

import ast
from pathlib import Path

DAEMON = Path(__file__).resolve().parents[2] / "daemon"
PRODUCTION = ("core", "config", "service")
NOT_PRODUCTION = ("daemon.tools", "daemon.dev", "daemon.lab")


def _daemon_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] == "daemon"}


def _module(path: Path) -> str:
    parts = path.relative_to(DAEMON.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_production_packages_import_no_tools_dev_stack_or_lab() -> None:
    files = [f for package in PRODUCTION for f in sorted((DAEMON / package).glob("*.py"))]
    assert len(files) >= 20
    offenders = {
        _module(f): sorted(name for name in _daemon_imports(f) if name.startswith(NOT_PRODUCTION))
        for f in files
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_the_service_modules_import_each_other_without_a_cycle() -> None:
    graph = {
        _module(f): {n for n in _daemon_imports(f) if n.startswith("daemon.service.")}
        for f in (DAEMON / "service").glob("*.py")
    }
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_only_the_cli_is_loose_in_daemon() -> None:
    loose = sorted(f.name for f in DAEMON.glob("*.py"))
    assert loose == ["__init__.py", "cli.py"]
