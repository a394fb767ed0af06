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
            yield _Import(f"{where}:{child.lineno}", module, in_function)
        nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        yield from _walk(child, parents, where, in_function=nested)


def _imports_of(package: str) -> list[_Import]:
    """Every import written in ``package``'s modules."""
    found: list[_Import] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT)
        module = ".".join(relative.with_suffix("").parts)
        found.extend(_imports_in_source(path.read_text(), module, str(relative)))
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
