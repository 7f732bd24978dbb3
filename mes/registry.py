"""Load the model registry from config/models.json into frozen specs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from mes.errors import ConfigError, UnknownModel

JSON_MODES = ("native", "prompt")
# Options that make Ollama reload a model when they change; they are fixed per model.
RUNNER_OPTIONS = frozenset({
    "num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "use_mlock",
    "num_thread", "low_vram", "numa", "vocab_only", "f16_kv",
})
SAMPLING_OPTIONS = frozenset({
    "temperature", "top_p", "top_k", "min_p", "typical_p", "seed", "num_predict", "stop",
    "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty",
    "mirostat", "mirostat_tau", "mirostat_eta", "num_keep", "penalize_newline",
})
_FAMILY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*(:[A-Za-z0-9._-]+)?$")
_DURATION = re.compile(r"^-?\d+(ms|s|m|h)?$")


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class FamilySpec:
    """Hold one model family: its queue and how many jobs its workers run at once."""

    name: str
    concurrency: int = 1

    def __post_init__(self) -> None:
        if not _FAMILY.match(self.name):
            raise ValueError(f"family name {self.name!r} must be lowercase letters, digits, - or _")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ValueError(f"family {self.name}: concurrency must be at least 1")

    @property
    def queue(self) -> str:
        """Return the Celery queue that this family's workers consume."""
        return f"mes.{self.name}"


@dataclass(frozen=True)
class ModelSpec:
    """Hold one model's identity, family and per-model defaults."""

    id: str
    family: FamilySpec
    timeout_s: int = 120
    keep_alive: str = "5m"
    options: Mapping[str, Any] = field(default_factory=dict)
    runner_options: Mapping[str, Any] = field(default_factory=dict)
    json_mode: str = "native"
    max_tokens: int = 4096
    format_max_attempts: int = 3
    warmup: str | None = None
    max_concurrency: int | None = None
    max_queue: int = 1000
    # Pinned: MES never evicts it (llama-swap's `persistent`); it counts against the cap.
    resident: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.max_concurrency is not None and (not isinstance(self.max_concurrency, int)
                                                 or self.max_concurrency < 1):
            problems.append("max_concurrency must be at least 1")
        if not isinstance(self.resident, bool):
            problems.append("resident must be true or false")
        if not isinstance(self.max_queue, int) or self.max_queue < 1:
            problems.append("max_queue must be at least 1")
        if self.warmup is not None:
            try:
                parse_warmup(self.warmup)
            except ValueError as exc:
                problems.append(f"warmup: {exc}")
        if not _MODEL_ID.match(self.id):
            problems.append("id must look like an Ollama name (name:tag)")
        if not isinstance(self.timeout_s, int) or not 1 <= self.timeout_s <= 86400:
            problems.append("timeout_s must be between 1 and 86400")
        if not isinstance(self.keep_alive, str) or not _DURATION.match(self.keep_alive):
            problems.append("keep_alive must be a duration such as 5m, 30s or -1")
        if self.json_mode not in JSON_MODES:
            problems.append(f"json_mode must be one of {', '.join(JSON_MODES)}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            problems.append("max_tokens must be at least 1")
        if not isinstance(self.format_max_attempts, int) or self.format_max_attempts < 1:
            problems.append("format_max_attempts must be at least 1")
        bad_sampling = set(self.options) - SAMPLING_OPTIONS
        if bad_sampling:
            problems.append(f"options has non-sampling keys {sorted(bad_sampling)}")
        bad_runner = set(self.runner_options) - RUNNER_OPTIONS
        if bad_runner:
            problems.append(f"runner_options has unknown keys {sorted(bad_runner)}")
        if problems:
            raise ValueError(f"model {self.id}: " + "; ".join(problems))
        object.__setattr__(self, "options", _frozen(self.options))
        object.__setattr__(self, "runner_options", _frozen(self.runner_options))

    @property
    def queue(self) -> str:
        """Return the queue that runs this model's jobs."""
        return self.family.queue

    @property
    def concurrency_limit(self) -> int:
        """Return how many of this model's jobs may run at once across every worker."""
        return self.max_concurrency or self.family.concurrency


def parse_warmup(text: str) -> tuple[str, object]:
    """Parse a warm-up schedule: an interval ('every 10m', '30s') or a 5-field cron expression."""
    value = text.strip()
    interval = value[len("every "):].strip() if value.startswith("every ") else value
    match = re.fullmatch(r"(\d+)(s|m|h)", interval)
    if match:
        seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]
        if seconds < 1:
            raise ValueError("an interval must be at least 1s")
        return "interval", seconds
    fields = value.split()
    if len(fields) == 5 and all(re.fullmatch(r"[\d*/,-]+", f) for f in fields):
        return "cron", tuple(fields)
    raise ValueError(f"{text!r} is neither an interval such as 'every 10m' nor a 5-field cron "
                     "expression such as '*/15 8-18 * * 1-5'")


class ModelRegistry:
    """Look up models and families by name."""

    def __init__(self, models: list[ModelSpec], warmup_on_start: tuple[str, ...] = ()):
        self._models = {model.id: model for model in models}
        self._families = {model.family.name: model.family for model in models}
        self.warmup_on_start = tuple(warmup_on_start)

    @classmethod
    def from_file(cls, path: Path | str) -> "ModelRegistry":
        """Load and check a models file, reporting every problem at once."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError([f"models file {path}: {exc}"]) from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "models config") -> "ModelRegistry":
        """Build a registry from the parsed models config."""
        problems: list[str] = []
        if not isinstance(data, dict) or not isinstance(data.get("families"), dict) \
                or not isinstance(data.get("models"), list):
            raise ConfigError([f"{source}: needs a 'families' object and a 'models' list"])
        families: dict[str, FamilySpec] = {}
        for name, spec in data["families"].items():
            try:
                families[name] = FamilySpec(name=name, **(spec or {}))
            except (TypeError, ValueError) as exc:
                problems.append(f"{source}: family {name}: {exc}")
        models: list[ModelSpec] = []
        seen: set[str] = set()
        for index, entry in enumerate(data["models"]):
            if not isinstance(entry, dict):
                problems.append(f"{source}: models[{index}] must be an object")
                continue
            entry = dict(entry)
            model_id = entry.get("id", f"models[{index}]")
            family = families.get(entry.pop("family", None))
            if family is None:
                problems.append(f"{source}: model {model_id}: family must be one of "
                                f"{', '.join(sorted(families))}")
                continue
            if model_id in seen:
                problems.append(f"{source}: model {model_id} is listed twice")
            seen.add(model_id)
            try:
                models.append(ModelSpec(family=family, **entry))
            except TypeError as exc:
                problems.append(f"{source}: model {model_id}: {exc}")
            except ValueError as exc:
                problems.append(f"{source}: {exc}")
        unused = set(families) - {model.family.name for model in models}
        if unused and not problems:
            problems.append(f"{source}: families without models: {', '.join(sorted(unused))}")
        warm = data.get("warmup_on_start", [])
        if not isinstance(warm, list) or any(m not in seen for m in warm):
            problems.append(f"{source}: warmup_on_start must list models of this file")
        if problems:
            raise ConfigError(problems)
        return cls(models, tuple(warm))

    def get(self, model_id: str) -> ModelSpec:
        """Return a model's spec, or raise UnknownModel."""
        try:
            return self._models[model_id]
        except KeyError:
            raise UnknownModel(f"model {model_id!r} is not in the registry",
                               {"model": model_id, "known": sorted(self._models)}) from None

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    @property
    def models(self) -> list[ModelSpec]:
        """Return every model, in config order."""
        return list(self._models.values())

    @property
    def families(self) -> list[FamilySpec]:
        """Return every family, in config order."""
        return list(self._families.values())
