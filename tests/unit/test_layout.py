"""The package's shape: no import cycles, and functions and modules of a readable size."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "vramscribe"

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
# Outside this layout's reach for now; see docs/architecture.md.
LONG_MODULES = {"vramscribe.audio", "vramscribe.runtime.runner"}
LONG_FUNCTIONS: set[str] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str) -> Iterator[str]:
    """Every package module ``name`` imports, at the top or inside functions."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            if target in MODULES and target != name:
                yield target


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_finder_sees_a_cycle_through_a_function_level_import() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# sim/ types its model and simulator against each other (under TYPE_CHECKING).
OUTSIDE = ("vramscribe.sim",)


@pytest.mark.parametrize("scope", ["vramscribe.service", "vramscribe.submit", "vramscribe.store",
                                   "vramscribe.cli", "vramscribe"])  # fmt: skip
def test_no_import_cycles(scope: str) -> None:
    # A package's __init__ importing its own modules is not a cycle of theirs.
    inside = {
        m for m in MODULES
        if (m == scope or m.startswith(scope + ".")) and not m.startswith(OUTSIDE)
    }  # fmt: skip
    graph = {m: {t for t in imports(m) if t in inside and t not in _parents(m)} for m in inside}
    assert find_cycle(graph) is None


def _parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_functions_and_modules_stay_readable() -> None:
    long_modules, long_functions = [], []
    for name, path in sorted(MODULES.items()):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES and name not in LONG_MODULES:
            long_modules.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and f"{name}.{node.name}" not in LONG_FUNCTIONS:
                    long_functions.append(f"{name}.{node.name}: {lines} lines")
    assert long_modules == []
    assert long_functions == []
