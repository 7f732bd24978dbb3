"""Check the house rules on what may import what, and on who spells a Redis key name."""

import ast
import re
from pathlib import Path

import pytest

from tests.support.imports import imports

ROOT = Path(__file__).resolve().parents[1]
SHARED = ("mes/*.py", "mes/backends", "mes/structured")  # what every side of MES builds on


def files(where: str) -> list[Path]:
    """Return the Python files of a folder and its subfolders, or those a glob like mes/*.py names."""
    found = ROOT.glob(where) if where.endswith(".py") else (ROOT / where).rglob("*.py")
    return sorted(found)


def within(module: str, packages: tuple[str, ...]) -> bool:
    """Tell whether a module is one of the packages or inside one."""
    return any(module == name or module.startswith(name + ".") for name in packages)


def offenders(where: str, forbidden: tuple[str, ...]) -> list[str]:
    """Return "file imports module" for each import, even a lazy one, of a forbidden package."""
    return [f"{path.relative_to(ROOT)} imports {found.module}"
            for path in files(where) for found in imports(path) if within(found.module, forbidden)]


def test_core_never_imports_web_or_queue_frameworks():
    assert offenders("mes", ("flask", "celery", "kombu", "web", "workers", "marshmallow")) == []


def test_engine_shares_no_code_with_the_rest_of_mes():
    shared = [f"{path.relative_to(ROOT)} imports {found.module}"
              for path in files("mes/engine") for found in imports(path)
              if found.module.startswith("mes.") and not within(found.module, ("mes.engine",))]
    assert shared == []


def test_web_never_imports_worker_code():
    assert offenders("web", ("workers", "mes.worker")) == []


@pytest.mark.parametrize("where,forbidden", [
    ("mes/intake", ("mes.worker",)),
    ("mes/store", ("mes.intake", "mes.worker")),
    *((shared, ("mes.intake", "mes.worker", "mes.cli", "mes.bench")) for shared in SHARED),
    # The CLI is being split into modules: whether it imports the bench lazily is for later.
    ("mes/bench", ("mes.cli",)),
])
def test_each_part_imports_only_what_sits_below_it(where, forbidden):
    assert offenders(where, forbidden) == []


# A Redis key name, as a literal: "mes:" followed at once by a lowercase letter ("mes:counters",
# "mes:job:*"), by a replacement field (f"mes:{kind}:..."), or by nothing ("mes:" + rest).
# Messages that are printed put a space after the colon ("mes: error", f"mes: {exc}"), so they
# never match; neither does the Celery queue "mes.smollm", which is no key of ours.
KEY_NAME = re.compile(r"mes:([a-z{]|$)")


def literal_texts(source: str) -> list[tuple[int, str]]:
    """Return (line, text) of each string literal; an f-string's replacement fields read "{}"."""
    tree = ast.parse(source)
    # An f-string's own text and format specs are read with it; code in its fields stands alone.
    parts = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
             for part in node.values if isinstance(part, ast.Constant)}
    parts |= {id(node.format_spec) for node in ast.walk(tree)
              if isinstance(node, ast.FormattedValue) and node.format_spec}
    texts = []
    for node in ast.walk(tree):
        if id(node) in parts:
            continue
        if isinstance(node, ast.JoinedStr):
            texts.append((node.lineno, "".join(part.value if isinstance(part, ast.Constant) else "{}"
                                               for part in node.values)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            value = node.value
            texts.append((node.lineno, value.decode(errors="replace") if isinstance(value, bytes)
                          else value))
    return texts


def test_only_the_store_spells_redis_key_names():
    """Nothing but mes/store (and mes/engine, which shares nothing) spells a `mes:*` key name.

    A string literal or f-string that starts with "mes:" followed at once by a lowercase letter,
    a replacement field or nothing is a key name (KEY_NAME); web/ and workers/ count too.
    Everyone else calls mes.store.names.
    """
    owners = (ROOT / "mes" / "store", ROOT / "mes" / "engine")
    spelled = [f"{path.relative_to(ROOT)}:{line}: {text!r}"
               for where in ("mes", "web", "workers") for path in files(where)
               if not any(owner in path.parents for owner in owners)
               for line, text in literal_texts(path.read_text()) if KEY_NAME.match(text)]
    assert spelled == []


def test_the_key_name_rule_tells_keys_from_messages():
    source = """
print("mes: error", f"mes: {exc}", f"mes: details: {details}", "mes.smollm", "the mes:job hash")
keys = ["mes:counters", f"mes:job:{job_id}", f"mes:{kind}:lock", b"mes:job:*", "mes:" + rest]
print(f"{width:>{n}}", f"state={client.get('mes:lease:1')!r}")
"""
    found = {text for _, text in literal_texts(source) if KEY_NAME.match(text)}
    assert found == {"mes:counters", "mes:job:{}", "mes:{}:lock", "mes:job:*", "mes:",
                     "mes:lease:1"}


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
