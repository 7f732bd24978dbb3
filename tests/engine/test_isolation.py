"""House rules: the engine uses the standard library only and shares no code with the rest of MES."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import mes.engine

ENGINE_DIR = Path(mes.engine.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module or "")
    return names


def test_engine_imports_only_stdlib_and_itself():
    offenders = []
    for path in sorted(ENGINE_DIR.glob("*.py")):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if name == "mes.engine" or name.startswith("mes.engine."):
                continue
            if top == "__future__" or top in sys.stdlib_module_names:
                continue
            offenders.append(f"{path.name}: {name}")
    assert offenders == []
