"""Read what a Python file imports, from its syntax tree, for the tests of the house rules."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple


class Import(NamedTuple):
    """Name one module an import statement may load, and whether it runs only when called."""

    module: str
    lazy: bool  # inside a function body


def package_of(path: Path) -> str:
    """Return the dotted package a file belongs to, found by its __init__.py files."""
    parts = []
    folder = path.resolve().parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def imports(path: Path) -> list[Import]:
    """Return every module PATH imports, relative imports made absolute.

    `from a.b import c` yields both a.b and a.b.c, since c may be a module.
    """
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(alias.name, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = package_of(path).split(".")
                    base = ".".join(package[:len(package) - child.level + 1] + ([base] if base else []))
                found.append(Import(base, lazy))
                found.extend(Import(f"{base}.{alias.name}", lazy) for alias in child.names
                             if alias.name != "*")
            visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(path.read_text(), str(path)), False)
    return found

