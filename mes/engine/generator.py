"""The generator interface every backend implements, plus the option handling shared by all.

A generator turns (model, prompt or messages, options, format) into token strings.
The server owns everything around it: scheduling, `num_predict` and `stop` enforcement
(`Shaper`), streaming and statistics. Two implementations exist:
`simulated.SimulatedGenerator` (deterministic text, configurable latency) and
`llamacpp.LlamaCppGenerator` (real GGUF models through llama-cpp-python).

Runner options (`num_ctx`, `num_batch`, `num_thread`) are fixed when a model loads, as in
Ollama: a request that asks for different ones makes the scheduler reload the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

ShouldStop = Callable[[], bool]
# Ollama 0.6's defaults; num_thread 0 means one thread per CPU core.
DEFAULT_NUM_CTX = 2048
DEFAULT_NUM_BATCH = 512


@dataclass(frozen=True)
class Runner:
    """Hold the options a model is loaded with; a different Runner means a reload."""

    num_ctx: int = DEFAULT_NUM_CTX
    num_batch: int = DEFAULT_NUM_BATCH
    num_thread: int = 0

    @property
    def threads(self) -> int:
        """Return the thread count to use (num_thread, or every core when 0)."""
        return self.num_thread if self.num_thread > 0 else (os.cpu_count() or 1)

    def merged(self, options: Mapping[str, Any]) -> "Runner":
        """Return this runner with the runner options of a request's OPTIONS applied."""
        values = {}
        for key in ("num_ctx", "num_batch", "num_thread"):
            value = options.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if value > 0 or (key == "num_thread" and value == 0):
                values[key] = int(value)
        return Runner(**{**self.__dict__, **values})


@dataclass
class Generation:
    """Hold what a generator returns: the prompt size and a lazy iterator of token strings.

    A generator may set `done_reason` (e.g. "length" when the context window filled up)
    and `context` (the token ids of prompt and reply) by the time the iterator ends.
    """

    prompt_eval_count: int
    tokens: Iterator[str]
    done_reason: str | None = None
    context: list[int] | None = field(default=None)

    def close(self) -> None:
        """Stop the token iterator early (releases a backend's decode loop)."""
        closer = getattr(self.tokens, "close", None)
        if closer is not None:
            closer()


@dataclass
class Embeddings:
    """Hold the vectors of an embed request and the number of tokens they took."""

    vectors: list[list[float]]
    prompt_eval_count: int


class PullError(Exception):
    """Raise when a model cannot be pulled; the message is Ollama's wording."""


class Generator(Protocol):
    """Load models and produce tokens; implementations must be safe to call from many threads."""

    def load(self, model: str, runner: Runner) -> None:
        """Bring MODEL into memory with RUNNER's options; never called concurrently for one model."""

    def unload(self, model: str) -> None:
        """Release MODEL's memory."""

    def generate(
        self,
        model: str,
        prompt: str | Sequence[Mapping[str, Any]],
        *,
        system: str | None,
        options: Mapping[str, Any],
        format: str | Mapping[str, Any] | None,
        should_stop: ShouldStop,
        raw: bool = False,
    ) -> Generation:
        """Process PROMPT (a string, or chat messages) and return a Generation; stop early when should_stop().

        A string prompt is wrapped in the model's chat template (with SYSTEM) unless RAW.
        """

    def embed(self, model: str, texts: Sequence[str], *, options: Mapping[str, Any], truncate: bool) -> Embeddings:
        """Return one unit-length vector per text; raises ValueError for input that does not fit."""

    def pull(self, model: str, should_stop: ShouldStop) -> Iterator[dict[str, Any]]:
        """Yield Ollama's pull progress objects for MODEL; raises PullError when it cannot be had."""

    def describe(self, model: str) -> Mapping[str, Any] | None:
        """Return /api/show fields read from the model file (template, model_info, license), or None."""


def stop_strings(options: Mapping[str, Any]) -> list[str]:
    """Return the non-empty `stop` strings of OPTIONS (a single string is accepted too)."""
    stop = options.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    return [s for s in stop or [] if isinstance(s, str) and s]


def num_predict(options: Mapping[str, Any]) -> int | None:
    """Return the token limit of OPTIONS, or None when unlimited (missing, 0 or negative as in Ollama)."""
    value = options.get("num_predict")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return int(value)


class Shaper:
    """Apply `num_predict` and `stop` to a token iterator, yielding the text pieces to send.

    Text that might be the start of a stop string is held back until it is known not to
    be, so a stop string split across tokens never reaches the client.
    """

    def __init__(self, tokens: Iterator[str], limit: int | None, stops: list[str]) -> None:
        self._tokens = tokens
        self._limit = limit
        self._stops = stops
        self.count = 0  # tokens consumed from the generator (eval_count)
        self.done_reason = "stop"

    def _held_back(self, text: str) -> int:
        best = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:size]):
                    best = size
                    break
        return best

    def __iter__(self) -> Iterator[str]:
        pending = ""
        tokens = iter(self._tokens)
        while True:
            if self._limit is not None and self.count >= self._limit:
                self.done_reason = "length"  # checked before pulling so no token is wasted
                break
            token = next(tokens, None)
            if token is None:
                break
            self.count += 1
            text = pending + token
            hits = [i for i in (text.find(s) for s in self._stops) if i >= 0]
            if hits:
                if min(hits) > 0:
                    yield text[: min(hits)]
                self.done_reason = "stop"
                return
            keep = self._held_back(text)
            pending = text[len(text) - keep :] if keep else ""
            if len(text) > keep:
                yield text[: len(text) - keep]
        if pending:
            yield pending
