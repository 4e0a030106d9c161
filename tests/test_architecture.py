"""Architecture guards, read from the code with ``ast`` (docs/architecture.md, "Layers").

- The test suite: no test module imports another test module or a conftest; fixtures come through
  ``pytest_plugins`` (tests/plugins), shared helpers from tests/plugins/helpers.
- The package: no import cycle between modules of ``censustrace``; dependencies point from the edges
  (cli, airflow, viewer, ops) to the core and from the core to the base, never back; the core never
  imports a web or command-line library, and importing the lineage package never loads FastAPI.

Every import counts: at module level, inside a function, or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import censustrace

PACKAGE = Path(censustrace.__file__).resolve().parent
TESTS = Path(__file__).resolve().parent

# Layers by top-level module of censustrace (a module `censustrace.x` or a package `censustrace/x/`).
EDGE = frozenset({"cli", "airflow", "viewer", "ops"})
CORE = frozenset(
    {
        "census",
        "intake",
        "quality",
        "consent",
        "shares",
        "lineage",
        "warehouse",
        "audit",
        "compliance",
        "warehouse_schema",
    }
)
BASE = frozenset(
    {"", "config", "errors", "db", "dburl", "csvsafe"}
)  # "": the package itself (its __version__)
# What the core must work without: the web and command-line faces' libraries.
FACE_LIBRARIES = frozenset({"fastapi", "starlette", "typer", "jinja2"})


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (for `from m import name`: m.name when that is a module, else m)
    line: int
    path: Path


def _module_names(root: Path, prefix: str) -> dict[str, Path]:
    """Dotted name -> file, for every .py under ``root`` (a package named ``prefix``)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [prefix, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imports(name: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(module, imported names, line) of every import statement in the file, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module, [alias.name for alias in node.names], node.lineno


def _resolve(module: str, names: list[str], known: dict[str, Path]) -> list[str]:
    """The known modules an import statement loads: ``m.name`` for submodules, else the nearest known
    module at or above ``m``."""
    targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
    if len(targets) < len(names) or not names:
        while module and module not in known:
            module = module.rpartition(".")[0]
        if module:
            targets.append(module)
    return targets


def _graph(root: Path, prefix: str) -> tuple[dict[str, Path], list[Import]]:
    known = _module_names(root, prefix)
    edges = []
    for name, path in known.items():
        for module, names, line in _imports(name, path):
            if module == prefix or module.startswith(prefix + "."):
                for target in _resolve(module, names, known):
                    if target != name:
                        edges.append(Import(name, target, line, path))
    return known, edges


def _external(root: Path, prefix: str) -> list[Import]:
    """Imports of modules outside the package (target: the top-level name, e.g. ``fastapi``)."""
    found = []
    for name, path in _module_names(root, prefix).items():
        for module, _, line in _imports(name, path):
            top = module.partition(".")[0]
            if top and top != prefix:
                found.append(Import(name, top, line, path))
    return found


def _top(module: str) -> str:
    """``censustrace.lineage.store.db`` -> ``lineage``; the package itself -> ``""``."""
    return module.split(".")[1] if "." in module else ""


def _where(edge: Import) -> str:
    return f"{edge.path.relative_to(PACKAGE.parent)}:{edge.line}: {edge.source} imports {edge.target}"


# --- the test suite ---------------------------------------------------------------------------------------


def test_no_test_module_imports_another_test_module_or_a_conftest() -> None:
    known, edges = _graph(TESTS, "tests")
    assert "tests.conftest" in known
    assert "tests.test_architecture" in known
    wrong = [
        f"{_where(edge)}"
        for edge in edges
        if known[edge.target].name == "conftest.py" or known[edge.target].name.startswith("test_")
    ]
    assert not wrong, (
        "test modules import test modules or conftests (move what they share to tests/plugins):\n"
        + ("\n".join(wrong))
    )


def test_fixtures_are_plugins_not_reexports() -> None:
    """Only the root conftest registers plugins; no test module or conftest re-exports names (``__all__``)."""
    wrong = []
    for name, path in _module_names(TESTS, "tests").items():
        if path.name != "conftest.py" and not path.name.startswith("test_"):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                if isinstance(target, ast.Name) and target.id == "__all__":
                    wrong.append(f"{name}: __all__")
                if (
                    isinstance(target, ast.Name)
                    and target.id == "pytest_plugins"
                    and name != "tests.conftest"
                ):
                    wrong.append(f"{name}: pytest_plugins outside the root conftest")
    assert not wrong, "\n".join(wrong)


# --- the package ------------------------------------------------------------------------------------------


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def _one_loop(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest import loop through the component's first module (breadth-first), for the message."""
    members, start = set(component), component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & members):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if succ not in came_from:
                    came_from[succ] = node
                    following.append(succ)
        frontier = following
    return component


def test_no_import_cycle_between_censustrace_modules() -> None:
    known, edges = _graph(PACKAGE, "censustrace")
    assert len(known) > 50, f"only {len(known)} modules found under {PACKAGE}"
    graph: dict[str, set[str]] = {name: set() for name in known}
    for edge in edges:
        graph[edge.source].add(edge.target)
    cycles = _cycles(graph)
    lines = [f"{len(c)} modules: {', '.join(c)}\n    e.g. {' -> '.join(_one_loop(graph, c))}" for c in cycles]
    assert not cycles, f"{len(cycles)} import cycles in censustrace:\n" + "\n".join(lines)


def test_every_top_level_module_has_a_layer() -> None:
    tops = {_top(name) for name in _module_names(PACKAGE, "censustrace")}
    assert tops - (EDGE | CORE | BASE) == set(), (
        "place it in EDGE, CORE or BASE here and in docs/architecture.md"
    )


def test_dependencies_point_from_the_edges_to_the_core_to_the_base() -> None:
    _, edges = _graph(PACKAGE, "censustrace")
    wrong = [
        _where(edge)
        for edge in edges
        if (_top(edge.source) in CORE and _top(edge.target) in EDGE)
        or (_top(edge.source) in BASE and _top(edge.target) not in BASE)
    ]
    assert not wrong, "the core imports an edge, or the base imports above itself:\n" + "\n".join(wrong)


def test_the_core_imports_no_web_or_command_line_library() -> None:
    wrong = [
        _where(edge)
        for edge in _external(PACKAGE, "censustrace")
        if _top(edge.source) in CORE | BASE and edge.target in FACE_LIBRARIES
    ]
    assert not wrong, f"the core imports {', '.join(sorted(FACE_LIBRARIES))}:\n" + "\n".join(wrong)


def test_importing_any_lineage_module_loads_no_fastapi() -> None:
    # Every lineage module but the migration scripts (alembic runs those, nobody imports them).
    lineage = sorted(
        name
        for name in _module_names(PACKAGE, "censustrace")
        if _top(name) == "lineage" and ".migrations" not in name
    )
    script = (
        "import importlib, sys\n"
        f"for name in {lineage!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted({m.partition('.')[0] for m in sys.modules} & {'fastapi', 'starlette'}))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]", f"importing censustrace.lineage loads {done.stdout.strip()}"
