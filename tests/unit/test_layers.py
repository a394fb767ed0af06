"""The packages' layers point one way, read from the source (nothing is imported).

``shared/`` is the core and knows no framework; ``jobs/`` is the queue both edges share;
``api/`` and ``worker/`` are the edges, which never import each other; ``cli/`` starts
them, and loads ``bench/`` only when ``p2p bench`` asks for it. ``p2p_client/`` talks to
the service over HTTP only, and imports none of it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class _Import:
    where: str
    """``path:line`` of the import statement."""
    module: str
    """The module imported, absolute (``from x import y`` gives ``x``)."""
    in_function: bool
    """Inside a function body: run when called, not when the module is loaded."""
    names: tuple[str, ...] = ()
    """What ``from module import …`` names (a submodule, or a name in ``module``)."""


def _imports_in_source(source: str, module: str, where: str) -> Iterator[_Import]:
    """Every import in ``source``, the text of ``module`` (its dotted name)."""
    parents = module.split(".")[:-1]
    yield from _walk(ast.parse(source), parents, where, in_function=False)


def _walk(node: ast.AST, parents: list[str], where: str, *, in_function: bool) -> Iterator[_Import]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            for alias in child.names:
                yield _Import(f"{where}:{child.lineno}", alias.name, in_function)
        elif isinstance(child, ast.ImportFrom):
            base = parents[: len(parents) - child.level + 1] if child.level else []
            module = ".".join([*base, *([child.module] if child.module else [])])
            names = tuple(alias.name for alias in child.names)
            yield _Import(f"{where}:{child.lineno}", module, in_function, names)
        nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        yield from _walk(child, parents, where, in_function=nested)


def _modules_of(package: str, root: Path = ROOT) -> dict[str, Path]:
    """``package``'s modules by dotted name (a package by its own name, not ``__init__``)."""
    modules: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports_of(package: str, root: Path = ROOT) -> list[_Import]:
    """Every import written in ``package``'s modules."""
    found: list[_Import] = []
    for module, path in _modules_of(package, root).items():
        # A package's __init__ resolves relative imports from itself, not its parent.
        name = f"{module}.__init__" if path.name == "__init__.py" else module
        found.extend(_imports_in_source(path.read_text(), name, str(path.relative_to(root))))
    return found


def _reaches(imported: str, packages: frozenset[str]) -> bool:
    return imported.split(".")[0] in packages


RULES = {
    "api": frozenset({"worker", "bench"}),
    "worker": frozenset({"api", "bench"}),
    "jobs": frozenset({"api", "worker", "cli", "bench"}),
    "shared": frozenset(
        {"fastapi", "starlette", "dramatiq", "redis", "api", "worker", "jobs", "cli", "bench"}
    ),
    # A program installs the client to talk to the service over HTTP, nothing more.
    "p2p_client": frozenset(
        {"api", "worker", "jobs", "shared", "cli", "bench"}
        | {"fastapi", "starlette", "dramatiq", "redis"}
    ),
}


@pytest.mark.parametrize(("package", "forbidden"), sorted(RULES.items()))
def test_a_package_never_imports_what_its_layer_must_not_know(
    package: str, forbidden: frozenset[str]
) -> None:
    imports = _imports_of(package)
    assert imports, f"no import read in {package}/"

    broken = [f"{i.where}: {i.module}" for i in imports if _reaches(i.module, forbidden)]

    assert broken == []


def test_the_cli_imports_the_benchmark_only_inside_the_function_that_runs_it() -> None:
    into_bench = [i for i in _imports_of("cli") if _reaches(i.module, frozenset({"bench"}))]
    assert into_bench, "p2p bench no longer reaches bench/: this test checks nothing"

    assert [f"{i.where}: {i.module}" for i in into_bench if not i.in_function] == []


def test_the_reader_tells_every_form_of_import_and_where_it_runs() -> None:
    source = """
import bench.run as run, os
from . import sibling
from ..shared import db
if True:
    from dramatiq import Actor
class Holder:
    import redis
def command() -> None:
    import bench
    async def inner() -> None:
        from api.app import create_app
"""

    found = [(i.module, i.in_function) for i in _imports_in_source(source, "cli.sub.main", "x")]

    assert found == [
        ("bench.run", False),
        ("os", False),
        ("cli.sub", False),
        ("cli.shared", False),
        ("dramatiq", False),
        ("redis", False),
        ("bench", True),
        ("api.app", True),
    ]


def _first_import_cycle(root: Path, package: str) -> list[str] | None:
    """A cycle of imports among ``package``'s modules (under ``root``), as the modules
    on it in order, or ``None``. Every import counts, those inside functions too: an
    import put off until a call still ties the two modules together."""
    modules = _modules_of(package, root)
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for found in _imports_of(package, root):
        path = Path(found.where.rsplit(":", 1)[0]).with_suffix("")
        parts = path.parts[:-1] if path.name == "__init__" else path.parts
        importer = ".".join(parts)
        # ``from a import b`` imports the module ``a.b`` if there is one, else ``a``.
        submodules = [f"{found.module}.{name}" for name in found.names]
        targets = {name if name in modules else found.module for name in submodules}
        graph[importer] |= {t for t in targets or {found.module} if t in modules} - {importer}
    done: set[str] = set()
    trail: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in trail:
            return [*trail[trail.index(module) :], module]
        if module in done:
            return None
        trail.append(module)
        for imported in sorted(graph[module]):
            cycle = visit(imported)
            if cycle is not None:
                return cycle
        trail.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle is not None:
            return cycle
    return None


def test_no_module_of_shared_imports_itself_through_others() -> None:
    cycle = _first_import_cycle(ROOT, "shared")

    assert cycle is None, " -> ".join(cycle or [])


def test_an_import_cycle_is_found_even_through_a_deferred_import(tmp_path: Path) -> None:
    (tmp_path / "core" / "store").mkdir(parents=True)
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "core" / "store" / "__init__.py").write_text("from .base import Database\n")
    (tmp_path / "core" / "store" / "base.py").write_text(
        "def open_store():\n    from core.store.sqlite import SQLiteDatabase\n"
    )
    (tmp_path / "core" / "store" / "sqlite.py").write_text("from core.store import base\n")
    (tmp_path / "core" / "schema.py").write_text("import core.store\n")

    cycle = _first_import_cycle(tmp_path, "core")

    assert cycle == ["core.store.base", "core.store.sqlite", "core.store.base"]
