"""Map Ollama's request options to llama.cpp's sampler arguments.

Defaults are Ollama's (api.DefaultOptions), not llama-cpp-python's: temperature 0.8,
top_k 40, top_p 0.9, min_p 0, typical_p 1, repeat_penalty 1.1 over the last 64 tokens,
no presence/frequency penalty, no mirostat. A missing or negative `seed` means a random one.
`num_predict` and `stop` are the server's business (generator.Shaper); runner options
(`num_ctx`, `num_batch`, `num_thread`) are fixed at load time (generator.Runner).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Mapping

_FLOATS = {
    "temperature": ("temp", 0.8),
    "top_p": ("top_p", 0.9),
    "min_p": ("min_p", 0.0),
    "typical_p": ("typical_p", 1.0),
    "repeat_penalty": ("repeat_penalty", 1.1),
    "presence_penalty": ("presence_penalty", 0.0),
    "frequency_penalty": ("frequency_penalty", 0.0),
    "mirostat_tau": ("mirostat_tau", 5.0),
    "mirostat_eta": ("mirostat_eta", 0.1),
}
_INTS = {"top_k": ("top_k", 40), "mirostat": ("mirostat_mode", 0)}
DEFAULT_REPEAT_LAST_N = 64


@dataclass(frozen=True)
class Sampling:
    """Hold the keyword arguments of `Llama.generate`, the seed and the penalty window."""

    kwargs: dict[str, Any]
    seed: int
    repeat_last_n: int


def _number(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"option {key!r} must be a number, got {value!r}")
    return value


def sampling(options: Mapping[str, Any], num_ctx: int, rng: random.Random | None = None) -> Sampling:
    """Return the sampler settings for OPTIONS; raises ValueError for a non-numeric value."""
    kwargs: dict[str, Any] = {name: float(_number(options, key, default)) for key, (name, default) in _FLOATS.items()}
    kwargs.update({name: int(_number(options, key, default)) for key, (name, default) in _INTS.items()})
    seed = int(_number(options, "seed", -1))
    if seed < 0:
        seed = (rng or random.SystemRandom()).randrange(2**31)
    window = int(_number(options, "repeat_last_n", DEFAULT_REPEAT_LAST_N))
    if window < 0:
        window = num_ctx  # -1 means the whole context, as in Ollama
    return Sampling(kwargs, seed, window)
