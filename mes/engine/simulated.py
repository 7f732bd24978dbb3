"""The simulated generator: deterministic pseudo-text with configurable latency.

The reply depends only on (model, prompt or messages, system, options.seed); with
`temperature: 0` the seed is ignored too, as greedy decoding would. Plain replies are
`response_tokens` words (16 by default), each token a word with a leading space.
`format: "json"` yields a JSON object and a schema `format` yields a document valid
against the schema, streamed in small pieces like any other text. Embeddings are
deterministic unit vectors; pulls succeed at once for any name, with progress lines.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

from mes.engine.bad_json import split_text
from mes.engine.config import EngineConfig, ModelSpec
from mes.engine import protocol as wire
from mes.engine.generator import Embeddings, Generation, Runner, ShouldStop
from mes.engine.schema_instance import instance_for
from mes.engine.words import HashRng

_SLEEP_SLICE = 0.05  # how often a long simulated wait looks at should_stop
EMBED_DIM = 768


def sleep_unless(seconds: float, should_stop: ShouldStop | None = None) -> bool:
    """Sleep SECONDS in slices, returning False early if should_stop() turns true."""
    deadline = time.monotonic() + seconds
    while True:
        if should_stop is not None and should_stop():
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, _SLEEP_SLICE))


def prompt_token_count(prompt: str | Sequence[Mapping[str, Any]], system: str | None) -> int:
    """Count whitespace-separated tokens of the prompt (or message contents) and system prompt."""
    if isinstance(prompt, str):
        texts = [prompt]
    else:
        texts = [str(m.get("content") or "") for m in prompt]
    texts.append(system or "")
    return max(1, sum(len(t.split()) for t in texts))


class SimulatedGenerator:
    """Generate deterministic text, sleeping to imitate load, prompt and per-token latency."""

    def __init__(self, config: EngineConfig, load_ms_override: Callable[[], float | None] | None = None) -> None:
        self._config = config
        self._load_ms_override = load_ms_override or (lambda: None)

    def _spec(self, model: str) -> ModelSpec:
        return self._config.model(model) or ModelSpec.named(model)

    def load(self, model: str, runner: Runner | None = None) -> None:
        """Pretend to read weights: sleep load_ms (or the fault override)."""
        override = self._load_ms_override()
        ms = override if override is not None else self._config.latency(self._spec(model), "load_ms")
        sleep_unless(ms / 1000.0)

    def unload(self, model: str) -> None:
        """Nothing to free for simulated weights."""

    def generate(
        self,
        model: str,
        prompt: str | Sequence[Mapping[str, Any]],
        *,
        system: str | None = None,
        options: Mapping[str, Any] | None = None,
        format: str | Mapping[str, Any] | None = None,
        should_stop: ShouldStop = lambda: False,
        raw: bool = False,
    ) -> Generation:
        """Sleep for prompt processing, then return a Generation that sleeps token_ms per token."""
        spec = self._spec(model)
        options = options or {}
        count = prompt_token_count(prompt, system)
        per_s = self._config.latency(spec, "prompt_tokens_per_s")
        delay_ms = self._config.latency(spec, "prompt_ms") + (count * 1000.0 / per_s if per_s > 0 else 0.0)
        sleep_unless(delay_ms / 1000.0, should_stop)
        pieces = self.pieces(spec, prompt, system, options, format)
        token_s = self._config.latency(spec, "token_ms") / 1000.0
        return Generation(prompt_eval_count=count, tokens=self._emit(pieces, token_s, should_stop))

    def pieces(
        self,
        spec: ModelSpec,
        prompt: str | Sequence[Mapping[str, Any]],
        system: str | None,
        options: Mapping[str, Any],
        format: str | Mapping[str, Any] | None,
    ) -> list[str]:
        """Return the full reply for these inputs as a list of tokens (no latency)."""
        if not isinstance(prompt, str):
            prompt = [[str(m.get("role", "")), str(m.get("content") or "")] for m in prompt]
        seed = None if options.get("temperature") == 0 else options.get("seed")
        rng = HashRng("mes-engine", spec.name, prompt, system or "", seed)
        if format is None:
            # Like an instruction-following model: a request that asks for JSON in words
            # (and gives a schema) gets JSON back even without the format parameter.
            format = requested_json(prompt, system)
        if isinstance(format, Mapping):
            return split_text(json.dumps(instance_for(dict(format), rng)))
        if format == "json":
            doc = {"answer": " ".join(rng.words(6)), "confidence": round(rng.random(), 2), "keywords": rng.words(2)}
            return split_text(json.dumps(doc))
        words = rng.words(self._config.tokens_for(spec))
        words[0] = words[0].capitalize()
        words[-1] += "."
        return [" " + w for w in words]

    def embed(self, model: str, texts: Sequence[str], *, options: Mapping[str, Any] | None = None,
              truncate: bool = True) -> Embeddings:
        """Return a deterministic unit vector per text (EMBED_DIM long)."""
        vectors = []
        for text in texts:
            rng = HashRng("mes-engine-embed", self._spec(model).name, text)
            vector = [rng.random() * 2.0 - 1.0 for _ in range(EMBED_DIM)]
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            vectors.append([v / norm for v in vector])
        return Embeddings(vectors, sum(prompt_token_count(t, None) for t in texts))

    def pull(self, model: str, should_stop: ShouldStop = lambda: False) -> Iterator[dict[str, Any]]:
        """Pretend to download MODEL: manifest, one layer in quarters, verify, write, success."""
        spec = self._spec(model)
        digest = "sha256:" + spec.digest
        yield wire.progress("pulling manifest")
        for quarter in range(5):
            yield wire.progress(wire.pulling(digest), digest, spec.size, spec.size * quarter // 4)
        yield from wire.pull_epilogue()

    def describe(self, model: str) -> None:
        """Say nothing beyond the catalogue: simulated models have no file."""
        return None

    @staticmethod
    def _emit(pieces: list[str], token_s: float, should_stop: ShouldStop) -> Iterator[str]:
        for piece in pieces:
            if token_s > 0 and not sleep_unless(token_s, should_stop):
                return
            if should_stop():
                return
            yield piece


def requested_json(prompt: Any, system: str | None) -> str | dict[str, Any] | None:
    """Return the schema (or "json") that the request's text asks for, if it asks for JSON."""
    texts = [system or ""]
    if isinstance(prompt, str):
        texts.append(prompt)
    else:
        texts += [str(part[1]) if isinstance(part, list) else str(part.get("content") or "")
                  for part in prompt]
    text = "\n".join(texts)
    if "JSON" not in text:
        return None
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                schema = json.loads(line)
            except ValueError:
                continue
            if isinstance(schema, dict) and ({"type", "properties", "$ref", "anyOf"} & set(schema)):
                return schema
    return "json"
