"""daemon/core is sans-I/O (house rule 1, docs/development.md): it imports no I/O library and
never reads a clock."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "daemon" / "core"
BANNED_MODULES = {
    "asyncio", "aiokafka", "redis", "prometheus_client", "socket", "time", "datetime",
    "threading", "subprocess", "structlog", "logging", "random", "os",
}  # fmt: skip


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_core_modules_import_no_io_clock_or_randomness() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 5
    offenders = {f.name: sorted(_imports(f) & BANNED_MODULES) for f in files}
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_core_calls_no_open_or_print() -> None:
    for path in CORE.glob("*.py"):
        tree = ast.parse(path.read_text())
        calls = {
            node.func.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        assert not calls & {"open", "print", "input"}, path.name


def _core_imports(path: Path) -> set[str]:
    """The daemon.core modules `path` imports, TYPE_CHECKING blocks and function bodies too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
        if module.startswith("daemon.core."):
            found.add(module.removeprefix("daemon.core."))
    return found


def test_core_modules_import_each_other_without_a_cycle() -> None:
    graph = {f.stem: _core_imports(f) for f in CORE.glob("*.py")}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            cycle = " -> ".join((*path[path.index(module) :], module))
            raise AssertionError(f"import cycle in daemon/core: {cycle}")
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
    assert {"shop", "rules", "queues", "sessions", "routing"} <= done


def test_core_modules_reach_into_no_other_modules_private_members() -> None:
    """Parts talk through their public methods: `x._y` only on `self` (or `cls`)."""
    offenders = [
        f"{path.name}:{node.lineno} .{node.attr}"
        for path in sorted(CORE.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
    ]
    assert offenders == []
