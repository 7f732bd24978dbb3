"""House rules: the engine uses the standard library only, shares no code with the rest of MES,
and imports llama-cpp-python lazily, so it runs (simulated) where that is not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mes.engine
from tests.support.imports import imports

ENGINE_DIR = Path(mes.engine.__file__).parent
LAZY_ALLOWED = {"llama_cpp"}  # only inside functions


def test_engine_imports_only_stdlib_and_itself():
    offenders = []
    for path in sorted(ENGINE_DIR.glob("*.py")):
        for name, in_function in imports(path):
            top = name.split(".")[0]
            if name == "mes.engine" or name.startswith("mes.engine."):
                continue
            if top == "__future__" or top in sys.stdlib_module_names:
                continue
            if top in LAZY_ALLOWED and in_function:
                continue
            offenders.append(f"{path.name}: {name}{'' if in_function else ' (at module level)'}")
    assert offenders == []


def test_the_whole_engine_imports_without_llama_cpp():
    code = ("import sys; sys.modules['llama_cpp'] = None\n"
            "import importlib, pathlib, mes.engine\n"
            "for p in sorted(pathlib.Path(mes.engine.__file__).parent.glob('*.py')):\n"
            "    importlib.import_module('mes.engine.' + p.stem) if p.stem != '__init__' else None\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
