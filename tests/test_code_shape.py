"""The package's shape rules, checked from its source: no function over 80
lines, and no import cycle among the modules of `tracker/` (imports made at
module level, where a cycle breaks loading)."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parent.parent / "tracker"
MAX_FUNCTION_LINES = 80


def modules() -> Dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return out


def module_level_imports(name: str, tree: ast.Module, known: Set[str]) -> Set[str]:
    """Modules of the package that `name` imports when it is loaded (not from
    inside functions; `if TYPE_CHECKING:` blocks count as loaded, to be safe)."""
    found: Set[str] = set()
    stack: List[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(node.module + "." + alias.name for alias in node.names)
        elif isinstance(node, (ast.If, ast.Try)):
            stack.extend(ast.iter_child_nodes(node))
    return {m for m in found if m in known and m != name}


def test_no_function_is_longer_than_80_lines():
    long = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append("%s.%s: %d lines" % (name, node.name, lines))
    assert long == []


def test_no_import_cycle_among_the_package_modules():
    trees = modules()
    graph = {name: module_level_imports(name, tree, set(trees)) for name, tree in trees.items()}
    # A package's __init__ imports its submodules, and a submodule importing a
    # sibling loads the package first: that edge is not a cycle of its own.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    cycles = []
    state: Dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: List[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


# The doors: each module that answers a wire protocol. They may share the
# helpers beside them (admission, timeouts, fastwrite, query...), never each other.
DOORS = {"tracker.doors.http", "tracker.doors.udp", "tracker.line.door", "tracker.ws.door"}
SQL = re.compile(r"\b(SELECT\s+\S.*\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|DELETE\s+FROM|UPDATE\s+\w+\s+SET"
                 r"|CREATE\s+(TABLE|INDEX))\b", re.IGNORECASE)


def test_no_door_imports_another_door():
    trees = modules()
    crossings = []
    for name in DOORS:
        for imported in module_level_imports(name, trees[name], set(trees)) | imports_anywhere(
                trees[name], set(trees)):
            if imported in DOORS and imported != name:
                crossings.append("%s imports %s" % (name, imported))
    assert crossings == []


def imports_anywhere(tree: ast.Module, known: Set[str]) -> Set[str]:
    found: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(node.module + "." + alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in known}


def test_no_sql_outside_the_store():
    """SQL text lives in tracker/store/ only: the rest records typed changes
    and reads through the store's query API."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "store":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                found.append("%s:%d" % (path.relative_to(PACKAGE.parent), node.lineno))
    assert found == []


def test_no_test_module_imports_another():
    """Shared test code lives in helper modules (helpers, clients, e2e_clients,
    process...), so running one test file never runs another's module code."""
    tests = Path(__file__).resolve().parent
    crossings = []
    for path in sorted(tests.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     else [])
            crossings += ["%s imports %s" % (path.name, n) for n in names if n.startswith("test_")]
    assert crossings == []
