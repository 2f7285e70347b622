"""The folder is the architecture (house rule 15, docs/development.md): what runs in production
(core, config, service) imports nothing of the operator tools, the dev stack or the lab, and the
service's modules import each other without a cycle. A part owns its state (house rule 14): no
module changes another part's attributes. Imports and writes are read with `ast`, lazy imports
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


# ------------------------------------------------------------------------ parts own state

PARTS = (
    "Candidate", "AgentIndex", "Stride", "Line", "Stats", "ReplyFigures", "Capacity", "SlotIndex",
    "Ends", "WaitHistogram",
)  # fmt: skip
"""The classes of daemon/core that own their state and change it only in their own methods
(a candidate and the parts it holds; the slot index). A new part is listed here."""

_MUTATORS = frozenset(
    (  # the methods by which a list, dict, set, deque or SortedList changes in place
        *("append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse"),
        *("popitem", "setdefault", "update", "add", "discard"),
        *("difference_update", "intersection_update", "symmetric_difference_update"),
        *("appendleft", "extendleft", "popleft", "rotate"),
    )
)


def _is_frozen_dataclass(cls: ast.ClassDef) -> bool:
    for deco in cls.decorator_list:
        if isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "dataclass":
            return any(
                k.arg == "frozen" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in deco.keywords
            )
    return False


def _state_names(cls: ast.ClassDef) -> set[str]:
    """What a part's state is: its `__slots__`, its fields (unless it is a frozen dataclass,
    whose fields are set once, by its constructor) and every `self.<name>` it assigns."""
    names: set[str] = set()
    frozen = _is_frozen_dataclass(cls)
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and not frozen:
            if "ClassVar" not in ast.unparse(node.annotation):
                names.add(node.target.id)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(ast.literal_eval(node.value))
    for node in ast.walk(cls):
        for target in _written(node):
            if isinstance(target, ast.Attribute) and _is_self(target.value):
                names.add(target.attr)
    return names


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _written(node: ast.AST) -> list[ast.expr]:
    """The expressions `node` assigns to or deletes (tuple targets unpacked)."""
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        targets = [node.target]
    elif isinstance(node, ast.Delete):
        targets = list(node.targets)
    elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
        targets = [node.target]
    elif isinstance(node, ast.withitem) and node.optional_vars is not None:
        targets = [node.optional_vars]
    else:
        return []
    out: list[ast.expr] = []
    while targets:
        target = targets.pop()
        if isinstance(target, ast.Tuple | ast.List):
            targets.extend(target.elts)
        elif isinstance(target, ast.Starred):
            targets.append(target.value)
        else:
            out.append(target)
    return out


def _changed_attributes(node: ast.AST) -> list[ast.Attribute]:
    """The attributes whose values `node` changes: assigned, augmented, deleted or item-
    assigned (`x.a = v`, `x.a += v`, `del x.a`, `x.a[k] = v`), or changed in place by a
    container method (`x.a.append(v)`, `x.a.clear()`)."""
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _MUTATORS:
            inner = func.value
            return [inner] if isinstance(inner, ast.Attribute) else []
        return []
    changed = []
    for target in _written(node):
        inner = target
        while isinstance(inner, ast.Subscript):
            inner = inner.value
        if isinstance(inner, ast.Attribute):
            changed.append(inner)
    return changed


def _parts(root: Path) -> list[ast.ClassDef]:
    """The classes of PARTS, as defined in the modules of `root`/core."""
    core = [ast.parse(f.read_text(), filename=str(f)) for f in sorted((root / "core").glob("*.py"))]
    return [
        node
        for tree in core
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name in PARTS
    ]


def _part_writes(root: Path) -> dict[str, list[str]]:
    """Every change of a part's state (by attribute name) made other than through `self`,
    in the modules under `root` (a `daemon` folder): `{module: ["line: x.name"]}`."""
    state = set().union(*(_state_names(cls) for cls in _parts(root)))
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for attr in _changed_attributes(node):
                if attr.attr in state and not _is_self(attr.value):
                    where = str(path.relative_to(root.parent))
                    found.setdefault(where, []).append(f"{attr.lineno}: {ast.unparse(attr)}")
    return found


def test_no_module_changes_the_state_of_another_part() -> None:
    """A part's state changes only in the part's own methods (house rule 14).

    The rule, as checked: the parts are the classes named in PARTS, and a part's state is
    every attribute name it gives itself (`_state_names`: its `__slots__`, its fields unless
    it is a frozen dataclass, whose fields are set once by its constructor, and each
    `self.<name>` it assigns). In any module of daemon/, a change of such an attribute
    `x.<name>` — assigning it (also in a tuple, augmented, annotated, as a loop target),
    deleting it, assigning or deleting an item or slice of it (`x.<name>[k] = v`), or
    calling a method that changes a container in place on it (`x.<name>.append(v)`,
    `.add`, `.clear`, `.pop`, `.update`, ... : `_MUTATORS`) — is an offender unless `x` is
    the bare name `self`: an object changes its own state, and `self.line.dirty = True`
    is as much an offender as `cand.line.dirty = True`. Reads are free, and so is calling
    a part's own methods (`cand.line.add(item)`): that is how a part is changed. Names are
    matched, not types (`ast` has none), so a part's attribute names are kept apart from
    those of the records whose holders fill them in (AgentState, QueueEntry, ...).
    Dynamic `setattr` is not read: no part is changed that way.
    """
    assert sorted(cls.name for cls in _parts(DAEMON)) == sorted(PARTS)  # none renamed away
    assert _part_writes(DAEMON) == {}


def test_the_part_rule_flags_a_change_through_any_other_object(tmp_path: Path) -> None:
    """What `_part_writes` reports, on a small tree: every shape of change made through
    another object, and none of the part's own changes, reads or calls of its methods."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "line.py").write_text(
        "class Line:\n"
        "    __slots__ = ('dirty', 'items')\n"
        "    def flushed(self):\n"
        "        self.dirty = False\n"
        "        self.items.clear()\n"
        "        self.seen = 1\n"
    )
    (tmp_path / "core" / "user.py").write_text(
        "def use(cand, line, other):\n"
        "    cand.line.dirty = True\n"
        "    line.seen += 1\n"
        "    cand.line.items[0] = 2\n"
        "    del line.dirty\n"
        "    other.x, line.dirty = 1, 2\n"
        "    cand.line.items.add(3)\n"
        "    cand.line.flushed()\n"
        "    return line.dirty, other.items\n"
        "class Holder:\n"
        "    def change(self):\n"
        "        self.line.dirty = True\n"
        "        self.dirty = True\n"
    )
    assert _part_writes(tmp_path) == {
        f"{tmp_path.name}/core/user.py": [
            "2: cand.line.dirty",
            "3: line.seen",
            "4: cand.line.items",
            "5: line.dirty",
            "6: line.dirty",
            "7: cand.line.items",
            "12: self.line.dirty",
        ]
    }
