"""The generator interface every backend implements, plus the option handling shared by all.

A generator turns (model, prompt or messages, options, format) into token strings.
The server owns everything around it: scheduling, `num_predict` and `stop` enforcement
(`Shaper`), streaming and statistics. `simulated.SimulatedGenerator` is the first
implementation; a llama.cpp one can slot in behind the same four methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

ShouldStop = Callable[[], bool]


@dataclass
class Generation:
    """Hold what a generator returns: the prompt size and a lazy iterator of token strings."""

    prompt_eval_count: int
    tokens: Iterator[str]

    def close(self) -> None:
        """Stop the token iterator early (releases a backend's decode loop)."""
        closer = getattr(self.tokens, "close", None)
        if closer is not None:
            closer()


class Generator(Protocol):
    """Load models and produce tokens; implementations must be safe to call from many threads."""

    def load(self, model: str) -> None:
        """Bring MODEL into memory; called once per load by the scheduler, never concurrently for one model."""

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
    ) -> Generation:
        """Process PROMPT (a string, or chat messages) and return a Generation; stop early when should_stop()."""


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
