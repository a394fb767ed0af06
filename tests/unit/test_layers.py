"""The packages' layers, read from the source (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path


def _first_import_cycle(root: Path, package: str) -> list[str] | None:
    """A cycle of imports among ``package``'s modules (under ``root``), as the modules
    on it in order, or ``None``. Every import counts, those inside functions too: an
    import put off until a call still ties the two modules together."""
    modules: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def imported_by(module: str, path: Path) -> set[str]:
        package_parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        named: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                named.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package_parts[: len(package_parts) - node.level + 1] if node.level else []
                source = ".".join([*base, *([node.module] if node.module else [])])
                # ``from a import b`` imports the module ``a.b`` if there is one, else ``a``.
                named.update(
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                    for alias in node.names
                )
        return {name for name in named if name in modules and name != module}

    graph = {module: imported_by(module, path) for module, path in modules.items()}
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
    root = Path(__file__).resolve().parents[2]

    cycle = _first_import_cycle(root, "shared")

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
