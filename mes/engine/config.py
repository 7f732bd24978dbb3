"""Engine configuration: the model catalogue, simulated latencies and scheduler limits.

Everything here is plain data. Environment variables are read by ``cli.main`` only,
so building an ``EngineConfig`` in a test never depends on the caller's shell.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from mes.engine.generator import Runner
DEFAULT_PORT = 11434
DEFAULT_VERSION = "0.6.5"
DEFAULT_MODELS = ("llama3.1:8b", "mistral:7b", "phi3:mini", "codellama:7b", "gemma:2b", "smollm2:135m")

# Plausible metadata for the default catalogue, in the shape `ollama list` reports it.
_KNOWN: dict[str, tuple[str, str, str, int]] = {
    "llama3.1:8b": ("llama", "8.0B", "Q4_K_M", 4_920_753_328),
    "mistral:7b": ("llama", "7.2B", "Q4_0", 4_113_301_824),
    "phi3:mini": ("phi3", "3.8B", "Q4_0", 2_176_178_913),
    "codellama:7b": ("llama", "7B", "Q4_0", 3_825_910_662),
    "gemma:2b": ("gemma", "3B", "Q4_0", 1_678_456_656),
    "smollm2:135m": ("llama", "134.52M", "F16", 270_898_672),
}

_LATENCY_KEYS = ("token_ms", "prompt_ms", "prompt_tokens_per_s", "load_ms")
_INT_KEYS = ("response_tokens", "num_parallel")


def normalize_name(name: str) -> str:
    """Return the canonical catalogue key for a model name (lower case, `:latest` tag added)."""
    name = name.strip().lower()
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        name += ":latest"
    return name


def _infer(name: str) -> tuple[str, str, str, int]:
    base, _, tag = normalize_name(name).rpartition("/")[2].partition(":")
    family = re.sub(r"[\d.]+$", "", base) or base
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([bm])", tag)
    if not match:
        return family, "7B", "Q4_0", 4_000_000_000
    amount, unit = float(match.group(1)), match.group(2)
    params = amount * (1e9 if unit == "b" else 1e6)
    label = f"{match.group(1)}{unit.upper()}"
    # ~4.5 bits per weight at Q4_0, which is what the library ships by default.
    return family, label, "Q4_0", int(params * 0.5625)


@dataclass(frozen=True)
class ModelSpec:
    """Describe one model the engine serves; latency fields of None fall back to EngineConfig."""

    name: str
    family: str = "llama"
    parameter_size: str = "7B"
    quantization_level: str = "Q4_0"
    size: int = 4_000_000_000
    token_ms: float | None = None
    prompt_ms: float | None = None
    prompt_tokens_per_s: float | None = None
    load_ms: float | None = None
    response_tokens: int | None = None
    num_parallel: int | None = None

    @classmethod
    def named(cls, name: str, **overrides: Any) -> "ModelSpec":
        """Build a spec for NAME, with known metadata for catalogue models and guesses otherwise."""
        key = normalize_name(name)
        family, params, quant, size = _KNOWN.get(key) or _infer(key)
        values: dict[str, Any] = dict(family=family, parameter_size=params, quantization_level=quant, size=size)
        values.update(overrides)
        return cls(name=key, **values)

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        """Parse a CLI model argument: `NAME[,key=value...]`, e.g. `phi3:mini,token_ms=5,num_parallel=2`."""
        name, *pairs = [part.strip() for part in text.split(",")]
        if not name:
            raise ValueError(f"empty model name in {text!r}")
        overrides: dict[str, Any] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"expected key=value, got {pair!r} in {text!r}")
            if key in _LATENCY_KEYS:
                overrides[key] = float(value)
            elif key in _INT_KEYS:
                overrides[key] = int(value)
            elif key in ("family", "parameter_size", "quantization_level"):
                overrides[key] = value
            elif key == "size":
                overrides[key] = int(value)
            else:
                raise ValueError(f"unknown model setting {key!r} in {text!r}")
        return cls.named(name, **overrides)

    @property
    def digest(self) -> str:
        """Return a stable fake sha256 digest for the model."""
        return hashlib.sha256(self.name.encode()).hexdigest()


def default_catalogue() -> list[ModelSpec]:
    """Return specs for the default model list."""
    return [ModelSpec.named(name) for name in DEFAULT_MODELS]


@dataclass
class EngineConfig:
    """Hold every knob of one engine instance; port 0 asks the OS for a free port."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    models: list[ModelSpec] = field(default_factory=default_catalogue)
    token_ms: float = 0.0
    prompt_ms: float = 0.0
    prompt_tokens_per_s: float = 0.0  # 0 disables the per-prompt-token cost
    load_ms: float = 0.0
    response_tokens: int = 16
    num_parallel: int = 1
    max_queue: int = 512
    max_loaded_models: int = 3  # 0 or less = unlimited
    keep_alive: float = 300.0  # seconds; float('inf') = forever, 0 = unload after each request
    version: str = DEFAULT_VERSION
    faults: dict[str, Any] = field(default_factory=dict)
    mid_stream_after: int = 3  # tokens sent before a drop/error mid-stream fault fires
    log_requests: bool = False  # one stderr line per generate/chat, like Ollama's request log
    runner: Runner = field(default_factory=Runner)  # num_ctx/num_batch/num_thread unless a request says

    def __post_init__(self) -> None:
        self.models = [m if isinstance(m, ModelSpec) else ModelSpec.named(str(m)) for m in self.models]

    def with_models(self, names: Iterable[str | ModelSpec]) -> "EngineConfig":
        """Return a copy serving NAMES instead of the current catalogue."""
        return replace(self, models=list(names))

    def add_model(self, name: str) -> ModelSpec:
        """Add NAME to the catalogue (a pulled model) unless present; return its spec."""
        spec = self.model(name)
        if spec is None:
            spec = ModelSpec.named(name)
            self.models = [*self.models, spec]  # a new list: readers iterate without a lock
        return spec

    def model(self, name: str) -> ModelSpec | None:
        """Look a requested model name up in the catalogue (case-insensitive, `:latest` implied)."""
        key = normalize_name(name)
        for spec in self.models:
            if spec.name == key:
                return spec
        return None

    def latency(self, spec: ModelSpec, key: str) -> float:
        """Return one latency setting for SPEC, its own value winning over the global one."""
        value = getattr(spec, key)
        return float(getattr(self, key) if value is None else value)

    def slots(self, spec: ModelSpec) -> int:
        """Return how many generations SPEC may run at once."""
        return max(1, spec.num_parallel if spec.num_parallel is not None else self.num_parallel)

    def tokens_for(self, spec: ModelSpec) -> int:
        """Return the natural response length of SPEC in tokens."""
        return max(1, spec.response_tokens if spec.response_tokens is not None else self.response_tokens)
