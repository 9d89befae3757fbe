"""The import rules of ``supervisor/``, read from the source (ast), not from a running import.

(a) No module imports another package's private module (``supervisor.x._y`` from outside
``supervisor.x``, relative forms included); tests, benchmarks and examples use public names.
(b) The layering of ``supervisor/__init__.py``'s docstring: a package imports only the
packages below it (``ALLOWED``), ``_errors`` is for everyone, and nothing imports ``cli``.
(c) No two modules of ``supervisor/`` import each other, even through others: a cycle
broken by an import inside a function is still a cycle (move what both need below both).
(d) ``connectors/`` (the SDK, under everything) imports nothing of ``supervisor``, not even
inside a function.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Set
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUPERVISOR = ROOT / "supervisor"

#: Which of supervisor's packages each one may import (besides itself and ``_errors``).
#: Top to bottom as in supervisor/__init__.py: cli > verify > edge > service > actor > wire, observe
#: > journal. ``supervisor`` is the facade; ``__main__`` only starts the command line.
ALLOWED: dict[str, frozenset[str]] = {
    "__main__": frozenset({"cli"}),
    "supervisor": frozenset({"edge", "service", "actor", "wire", "observe", "journal"}),
    "cli": frozenset({"verify", "edge", "service", "actor", "wire", "observe", "journal"}),
    "verify": frozenset({"edge", "service", "actor", "wire", "observe", "journal"}),
    "edge": frozenset({"service", "actor", "wire", "observe", "journal"}),
    "service": frozenset({"actor", "wire", "observe", "journal"}),
    "actor": frozenset({"wire", "observe", "journal"}),
    "wire": frozenset({"journal"}),
    "observe": frozenset({"journal"}),
    "journal": frozenset(),
    "_errors": frozenset(),
}

#: White-box tests that may reach a private module, and which (keep this short).
PRIVATE_ALLOWED: dict[str, frozenset[str]] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """Every dotted name ``path`` imports (modules, and module.name for ``from`` imports),
    relative imports resolved."""
    for node, module in _imports(path):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        else:
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def _imports(path: Path) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement of ``path`` (at any depth) and, for ``from`` imports, the
    module it names, relative imports resolved ("" for a plain ``import``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield node, ""
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield node, ".".join([*base, *([node.module] if node.module else [])])
            else:
                yield node, node.module or ""


def private_owner(name: str) -> str | None:
    """The package whose private part ``name`` reaches (``supervisor.x`` for
    ``supervisor.x._y``), or None when ``name`` is public."""
    parts = name.split(".")
    for at, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:at])
    return None


def layer_of(name: str) -> str:
    """``cli`` for ``supervisor.cli._main``, ``supervisor`` for the facade itself."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "supervisor"


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_the_table_names_every_package_and_module_of_supervisor() -> None:
    found = {p.stem if p.is_file() else p.name for p in SUPERVISOR.iterdir()}
    found -= {"__init__", "__pycache__"}
    assert found == set(ALLOWED) - {"supervisor"}


def test_the_table_is_the_facades_docstring() -> None:
    import supervisor

    doc = supervisor.__doc__ or ""
    layers = [line.split()[0] for line in doc.splitlines() if line.startswith("    ")]
    assert layers == [
        "cli",
        "verify",
        "edge",
        "service",
        "actor",
        "wire",
        "observe",
        "journal",
        "_errors",
    ]
    # Each layer may import exactly the layers listed below it (wire and observe share a
    # level: neither imports the other), and nothing imports cli.
    for at, layer in enumerate(layers[:-1]):
        below = set(layers[at + 1 : -1]) - ({"observe"} if layer == "wire" else set())
        assert ALLOWED[layer] == below, layer
    assert all("cli" not in allowed for name, allowed in ALLOWED.items() if name != "__main__")


@pytest.mark.parametrize("path", sources("supervisor"), ids=lambda p: module_name(p))
def test_supervisor_modules_keep_the_import_rules(path: Path) -> None:
    importer = module_name(path)
    layer = layer_of(importer)
    broken = []
    for line, name in imported(path):
        if not name.startswith("supervisor.") and name != "supervisor":
            continue
        owner = private_owner(name)
        if owner is not None and not (importer == owner or importer.startswith(owner + ".")):
            broken.append(f"line {line}: {name} is private to {owner}")
        target = layer_of(name)
        if target not in (layer, "_errors") and target not in ALLOWED[layer]:
            broken.append(f"line {line}: {layer} may not import {target} ({name})")
    assert broken == []


@pytest.mark.parametrize(
    "path", sources("tests", "bench", "examples"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_tests_benchmarks_and_examples_use_public_names(path: Path) -> None:
    allowed = PRIVATE_ALLOWED.get(str(path.relative_to(ROOT)), frozenset())
    private = {
        f"line {line}: {name}"
        for line, name in imported(path)
        if name.startswith("supervisor.")
        and private_owner(name) is not None
        and not any(name == m or name.startswith(m + ".") for m in allowed)
    }
    assert private == set()


@pytest.mark.parametrize("path", sources("connectors"), ids=lambda p: module_name(p))
def test_the_connector_sdk_imports_nothing_of_the_supervisor(path: Path) -> None:
    upward = [
        f"line {line}: {name}"
        for line, name in imported(path)
        if name == "supervisor" or name.startswith("supervisor.")
    ]
    assert upward == []


def test_the_rules_resolve_relative_imports_and_see_private_modules() -> None:
    names = {name for _, name in imported(SUPERVISOR / "actor" / "_actor.py")}
    assert {"supervisor.journal", "supervisor.actor._answer", "supervisor._errors"} <= names
    assert private_owner("supervisor.journal._store") == "supervisor.journal"
    assert private_owner("supervisor.journal.Journal") is None
    assert private_owner("supervisor.__main__") is None
    assert private_owner("supervisor._errors.NotFound") == "supervisor"


def module_edges(path: Path, modules: Set[str]) -> set[str]:
    """The modules of ``modules`` that ``path`` imports, at any depth of its code: for
    ``from package import name``, the submodule ``name`` when it is one, else the package."""
    edges = set()
    for node, module in _imports(path):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            names = [f"{module}.{alias.name}" for alias in node.names]
            names = [name if name in modules else module for name in names]
        for name in names:
            parts = name.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts:
                edges.add(".".join(parts))
    return edges - {module_name(path)}


def cycles(graph: Mapping[str, Set[str]]) -> list[list[str]]:
    """Each group of nodes that reach each other (more than one), sorted."""
    reach = {node: _reachable(graph, node) for node in graph}
    groups = {
        tuple(sorted({node} | {other for other in reach[node] if node in reach[other]}))
        for node in graph
        if node in reach[node]
    }
    return sorted(list(group) for group in groups)


def _reachable(graph: Mapping[str, Set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


def test_supervisor_modules_import_each_other_in_one_direction_only() -> None:
    paths = sources("supervisor")
    modules = {module_name(p) for p in paths}
    graph = {module_name(p): module_edges(p, modules) for p in paths}
    assert cycles(graph) == []


def test_the_cycle_rule_sees_cycles_through_others() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    # ``from . import _engine`` takes a submodule, not the package; a function's import counts.
    modules = {module_name(p) for p in sources("supervisor")}
    journal = module_edges(SUPERVISOR / "journal" / "_journal.py", modules)
    assert {"supervisor.journal._engine", "supervisor.journal._migrate"} <= journal
    assert "supervisor.journal" not in journal
    assert "supervisor.edge" in module_edges(SUPERVISOR / "cli" / "_serve.py", modules)
