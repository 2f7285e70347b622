"""daemon/core is sans-I/O (STYLE.md 1): it imports no I/O library and never reads a clock."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "daemon" / "core"
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
