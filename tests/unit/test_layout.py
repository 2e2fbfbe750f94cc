"""The package's shape, measured: short classes and functions, no import cycle, and
drivers that share (almost) nothing once ``async``/``await`` are stripped."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

import pytest

from pymilvus_flushsync._params import UNTIL, Until
from pymilvus_flushsync._stages import STAGES

PACKAGE = Path(__file__).resolve().parents[2] / "pymilvus_flushsync"
MODULES = sorted(PACKAGE.glob("*.py"))
MOST_CLASS_LINES = 180
MOST_FUNCTION_LINES = 50
#: Distinct non-trivial lines that may stand in both drivers (``shared_driver_lines``).
MOST_SHARED_DRIVER_LINES = 15


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _lengths(kind: type | tuple[type, ...]) -> list[tuple[str, int]]:
    """Each class or function of the package (``kind``), and its number of lines."""
    found = []
    for path in MODULES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, kind):
                assert isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                found.append((f"{path.name}:{node.lineno} {node.name}", size))
    return found


def test_no_class_is_longer_than_180_lines() -> None:
    assert [(n, size) for n, size in _lengths(ast.ClassDef) if size > MOST_CLASS_LINES] == []


def test_no_function_is_longer_than_50_lines() -> None:
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    assert [(n, size) for n, size in _lengths(functions) if size > MOST_FUNCTION_LINES] == []


def imports() -> dict[str, set[str]]:
    """Each package module's imports of the package's modules, type-only ones included."""
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        found: set[str] = set()
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    found.add(node.module)
                else:
                    found.update(alias.name for alias in node.names if alias.name.startswith("_"))
        graph[path.stem] = found & {p.stem for p in MODULES}
    return graph


def test_no_two_package_modules_import_each_other() -> None:
    graph = imports()
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(graph[module]):
            if imported in path:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported != "__init__":
                visit(imported, [*path, imported])

    for module in graph:
        visit(module, [module])
    assert cycles == []


#: Lines that carry no logic of their own: control words, lone punctuation.
_TRIVIAL = re.compile(
    r"^(try:|else:|finally:|return|pass|continue|break|raise|(return )?[(\[{]|[)\]}]+:?,?)$"
)


def node_lines(node: ast.AST) -> tuple[int, int]:
    first = getattr(node, "lineno", 0)
    return first, getattr(node, "end_lineno", None) or first


def driver_lines(path: Path) -> set[str]:
    """A driver's distinct non-trivial code lines, ``async``/``await`` stripped: no
    blank lines, comments, docstrings, imports, signatures (``def`` and ``class``
    headers with their parameters and decorators), lone keywords and punctuation."""
    tree = _tree(path)
    skipped: set[int] = set()  # docstrings, imports, and the signatures (decorators included)
    for node in ast.walk(tree):
        first, last = node_lines(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            last = node.body[0].lineno - 1
            first = min([d.lineno for d in node.decorator_list] + [first])
        elif not isinstance(node, (ast.Import, ast.ImportFrom)) and not (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        ):
            continue
        skipped.update(range(first, last + 1))
    out = set()
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = re.sub(r"\b(async|await)\s+", "", raw.split("  #")[0]).strip()
        if number in skipped or not line or line.startswith(("#", "import ", "from ")):
            continue
        if not _TRIVIAL.match(line):
            out.add(line)
    return out


def shared_driver_lines() -> set[str]:
    return driver_lines(PACKAGE / "_sync.py") & driver_lines(PACKAGE / "_async.py")


def test_the_drivers_share_at_most_15_lines() -> None:
    shared = shared_driver_lines()
    assert len(shared) <= MOST_SHARED_DRIVER_LINES, sorted(shared)


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_every_module_names_what_it_exports(path: Path) -> None:
    names = {
        target.id
        for node in _tree(path).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert path.name in {"__main__.py", "_exits.py"} or "__all__" in names


def _signature_defaults(tree: ast.Module) -> set[int]:
    """The ids of the constants that are a signature's defaults: a function's, a
    dataclass field's, or a ``Literal[...]``'s values (the public types); and an enum
    member's value (``Event.INDEXED``: an event, not a stage)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            found.update(id(a.value) for a in node.body if isinstance(a, ast.Assign))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.update(id(d) for d in [*node.args.defaults, *node.args.kw_defaults] if d)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            found.add(id(node.value))
        elif isinstance(node, ast.Subscript) and getattr(node.value, "id", "") == "Literal":
            found.update(id(n) for n in ast.walk(node.slice))
    return found


def test_a_stage_is_named_in_the_registry_alone() -> None:
    # a signature's default aside (``until="persisted"``), no module spells a stage
    stages = set(UNTIL)
    found = []
    for path in MODULES:
        if path.name == "_stages.py":
            continue
        tree = _tree(path)
        allowed = _signature_defaults(tree)
        found += [
            f"{path.name}:{node.lineno} {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in stages and id(node) not in allowed
        ]
    assert found == []
    assert get_args(Until) == UNTIL == tuple(stage.name for stage in STAGES)
