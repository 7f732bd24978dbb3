"""Check the house rules that keep the core free of frameworks."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def full_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_never_imports_web_or_queue_frameworks():
    for path in (ROOT / "mes").rglob("*.py"):
        bad = imported_modules(path) & {"flask", "celery", "kombu", "web", "workers", "marshmallow"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_engine_shares_no_code_with_the_rest_of_mes():
    for path in (ROOT / "mes" / "engine").rglob("*.py"):
        for name in full_imports(path):
            assert not name.startswith("mes.") or name.startswith("mes.engine"), \
                f"{path.relative_to(ROOT)} imports {name}"


def test_web_never_imports_worker_code():
    for path in (ROOT / "web").rglob("*.py"):
        assert "workers" not in imported_modules(path), f"{path.relative_to(ROOT)} imports workers"


def test_procfile_matches_the_launcher():
    import sys

    from mes.stack import StackOptions, process_table
    from mes.registry import ModelRegistry

    table = process_table(ModelRegistry.from_file(ROOT / "config" / "models.json"),
                          StackOptions(simulated=True))
    expected = {name: cmd.replace(sys.executable, "python") for name, cmd in table.items()}
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    procfile = dict(line.split(": ", 1) for line in lines)
    assert procfile == expected
