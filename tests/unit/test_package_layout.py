"""The source tree keeps its shape: no import cycle, few modules at the top, a thin CLI, libvirt and subprocess each
behind one door, and tests/unit mirroring src/dom0.

Every module under src/dom0 is parsed with `ast` (nothing is imported), and every import statement counts, those
inside functions too: a function-level import still ties the two modules together, it only delays the failure.
Imports under `if TYPE_CHECKING:` never run, so they cannot make a cycle at run time and are left out of the cycle
check; they still count for the other rules, because a type annotation is still a dependency on that module.
Importing dom0.a.b runs dom0/a/__init__.py first, but that implicit step is not an edge here: a package publishing
its submodules' names is the usual shape, and it only loops when a submodule imports the package back, which is an
explicit import and counted.
(This file is not tests/unit/test_layout.py: tests/unit/image/test_layout.py has that basename, and pytest's and
mypy's module names would collide.)
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PACKAGE = SRC / "dom0"
UNIT = ROOT / "tests" / "unit"

TOP_MODULES_MAX = 5
# What every command prints through; any cli/ module may use these, and no other cli/ module.
CLI_SHARED = {"dom0.cli.session", "dom0.cli.table", "dom0.cli.progress"}
# os functions that start another program: only run.py may, like subprocess.
_EXEC_CALLS = ("system", "popen", "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe")
_EXEC_PREFIXES = ("spawn", "posix_spawn")
# Packages whose tests sit in their parent's directory, and why. Test directories are not packages, so mypy puts
# tests/unit/hypervisor on its search path: a tests/unit/hypervisor/libvirt/ there is taken for the libvirt module
# itself and every `libvirt.X` in the backend fails type checking.
TESTED_IN_PARENT = {Path("hypervisor/libvirt"): "a test directory named libvirt shadows libvirt for mypy"}


@dataclass(frozen=True)
class Import:
    """One imported module name as written (absolute), where, and whether only type checkers see it."""

    name: str
    line: int
    typing_only: bool


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. dom0.storage.base
    path: Path
    is_package: bool
    imports: tuple[Import, ...]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, package: str) -> Iterator[Import]:
    """Every module an import statement (or importlib.import_module / __import__ of a literal) names."""

    def walk(node: ast.AST, typing_only: bool) -> Iterator[Import]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                yield from walk(stmt, True)
            for stmt in node.orelse:
                yield from walk(stmt, typing_only)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno, typing_only)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            # `from dom0.storage import lvm` depends on the module dom0.storage.lvm; `from dom0.storage import probe`
            # on dom0.storage (see _target)
            for alias in node.names:
                yield Import(f"{module}.{alias.name}", node.lineno, typing_only)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield Import(node.args[0].value, node.lineno, typing_only)
        for child in ast.iter_child_nodes(node):
            yield from walk(child, typing_only)

    yield from walk(tree, False)


def _modules() -> dict[str, Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        package = name if is_package else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        found[name] = Module(name, path, is_package, tuple(_imports(tree, package)))
    return found


MODULES = _modules()


def _target(name: str) -> str | None:
    """The dom0 module an imported name lands in (a name imported from a module is that module), else None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _edges(module: Module, *, runtime_only: bool) -> dict[str, int]:
    """The other dom0 modules `module` imports, each with the first line that does."""
    out: dict[str, int] = {}
    for imp in module.imports:
        if runtime_only and imp.typing_only:
            continue
        target = _target(imp.name) if imp.name.startswith("dom0") else None
        if target and target != module.name:
            out.setdefault(target, imp.line)
    return out


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].path.relative_to(ROOT)}:{line}"


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (its modules in import order, the first repeated at the end) per strongly connected group."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm; the tree is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph.get(v, {}):
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for group in groups:
        start = min(group)
        # a shortest way back to `start` inside the group, found breadth first
        paths = {start: [start]}
        queue = [start]
        cycle: list[str] = []
        while queue and not cycle:
            v = queue.pop(0)
            for w in sorted(graph[v]):
                if w == start:
                    cycle = [*paths[v], start]
                    break
                if w in group and w not in paths:
                    paths[w] = [*paths[v], w]
                    queue.append(w)
        cycles.append(cycle)
    return sorted(cycles)


def test_the_cycle_finder_reports_a_cycle() -> None:
    """The check below can fail: a loop through three modules is found and named in order."""
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert import_cycles(graph) == [["a", "b", "c", "a"]]
    assert import_cycles({"a": {"b": 1}, "b": {}}) == []


def test_no_import_cycle_among_dom0_modules() -> None:
    graph = {name: _edges(m, runtime_only=True) for name, m in MODULES.items()}
    found = []
    for cycle in import_cycles(graph):
        steps = [f"{a} -> {b} ({_where(a, graph[a][b])})" for a, b in itertools.pairwise(cycle)]
        found.append("import cycle: " + ", ".join(steps))
    assert not found, "\n".join(found)


def test_at_most_five_modules_at_the_top_of_the_package() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(top) <= TOP_MODULES_MAX, f"{len(top)} modules at the top of src/dom0 (a package per job): {top}"


def test_cli_modules_import_only_the_shared_cli_helpers() -> None:
    """cli/ parses, calls the library and prints: a cli/ module needing another's code means that code belongs in
    the library. main.py names the handler modules as strings ("dom0.cli.see:cmd_list"), which are not imports."""
    found = []
    for name, module in MODULES.items():
        if not name.startswith("dom0.cli.") or name in CLI_SHARED:
            continue
        for target, line in _edges(module, runtime_only=False).items():
            if target.startswith("dom0.cli.") and target not in CLI_SHARED:
                found.append(f"{name} imports {target} ({_where(name, line)})")
    assert not found, "\n".join(found)


def _imported_roots(module: Module) -> dict[str, int]:
    """Top-level names of everything `module` imports that is not dom0, with a line each."""
    return {imp.name.split(".")[0]: imp.line for imp in reversed(module.imports) if not imp.name.startswith("dom0")}


def test_only_the_hypervisor_package_imports_libvirt() -> None:
    found = [
        f"{name} imports {root} ({_where(name, line)})"
        for name, module in MODULES.items()
        if not name.startswith("dom0.hypervisor.")
        for root, line in _imported_roots(module).items()
        if root.startswith("libvirt")
    ]
    assert not found, "only dom0.hypervisor may import libvirt:\n" + "\n".join(found)


def _starts_programs(tree: ast.AST) -> Iterator[int]:
    """Lines calling os.system, os.popen, os.exec* or os.spawn*: other programs started without run.py."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"):
            continue
        if node.attr in _EXEC_CALLS or node.attr.startswith(_EXEC_PREFIXES):
            yield node.lineno


def test_only_run_py_starts_other_programs() -> None:
    found = []
    for name, module in MODULES.items():
        if name == "dom0.run":
            continue
        for root, line in _imported_roots(module).items():
            if root == "subprocess":
                found.append(f"{name} imports {root} ({_where(name, line)})")
        tree = ast.parse(module.path.read_text())
        found += [f"{name} starts a program itself ({_where(name, line)})" for line in _starts_programs(tree)]
    assert not found, "external commands go through dom0.run:\n" + "\n".join(found)


def test_tests_unit_mirrors_the_packages() -> None:
    """Each package's tests live in the same place under tests/unit, and a test directory names a package."""
    packages = {m.path.parent.relative_to(PACKAGE) for m in MODULES.values() if m.is_package} - {Path(".")}
    packages -= set(TESTED_IN_PARENT)
    untested = sorted(p for p in packages if not any((UNIT / p).glob("test_*.py")))
    missing = [f"src/dom0/{p} has no tests in tests/unit/{p}/" for p in untested]
    test_dirs = {p.parent.relative_to(UNIT) for p in UNIT.rglob("test_*.py")} - {Path(".")}
    strays = [f"tests/unit/{d}/ holds tests but src/dom0/{d} is no package" for d in sorted(test_dirs - packages)]
    assert not missing + strays, "\n".join(missing + strays)
