"""The llamacpp generator: real GGUF models in-process through llama-cpp-python.

`llama_cpp` is imported when a generator is built, never at module import, so the engine
runs without it (``--simulated``). Per loaded model there is one `llama_cpp.Llama`
instance per running generation: one by default, more only when `num_parallel` lets
several generations run at once, because a Llama object is not thread-safe. An
instance is checked out for a whole generation and returned when its tokens end or
are closed. A second, embedding-only instance is made on the first /api/embed.

A string prompt is wrapped in the model's own chat template (the GGUF's
`tokenizer.chat_template`, with the request's `system` as a system message) unless the
request is `raw`; chat messages always are. SmolLM2, for one, answers nothing to a bare
prompt. `format` constrains decoding with a llama.cpp grammar: the JSON grammar for
"json", or the grammar `LlamaGrammar.from_json_schema` builds for a schema.

Each generation evaluates its whole prompt from an empty KV cache, so a greedy reply
depends on the prompt alone. Ollama reuses the cached prompt prefix instead; on a CPU that
re-evaluates the last prompt token in a batch of one, and the slightly different logits can
make a repeated greedy request answer differently from the first.

A prompt longer than the context keeps its first `num_keep` tokens and its end, as
Ollama's runner does; generation stops with done_reason "length" when the context is
full (Ollama would shift the context instead).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from mes.engine import protocol as wire
from mes.engine.llama_model import LoadedModel, Tokens
from mes.engine.config import normalize_name
from mes.engine.generator import Embeddings, Generation, PullError, Runner, ShouldStop
from mes.engine.gguf import INSTALL_LLAMA_CPP, MissingDependency
from mes.engine.sampling import sampling

DEFAULT_NUM_KEEP = 4
_GRAMMAR_CACHE = 64
_HASH_CHUNK = 8 * 1024 * 1024


def import_llama_cpp() -> Any:
    """Import llama_cpp, or raise MissingDependency naming the pip command."""
    try:
        import llama_cpp
        import llama_cpp.llama_chat_format  # noqa: F401 - used via the package
        import llama_cpp.llama_grammar  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(f"the llamacpp generator needs llama-cpp-python ({exc}): {INSTALL_LLAMA_CPP}; "
                                "or pass --simulated") from None
    return llama_cpp


def _typed(value: str) -> Any:
    # llama-cpp-python hands GGUF metadata over as strings.
    for kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            pass
    return {"true": True, "false": False}.get(value, value)


class LlamaCppGenerator:
    """Generate with llama-cpp-python from GGUF files registered by model name."""

    def __init__(self, files: Mapping[str, Path], *, num_keep: int = DEFAULT_NUM_KEEP) -> None:
        self.lib = import_llama_cpp()
        self.files = {name: Path(path) for name, path in files.items()}
        self._num_keep = num_keep
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self._digests: dict[tuple[str, int, float], str] = {}
        self._described: dict[str, dict[str, Any]] = {}

    def _path(self, model: str) -> Path:
        path = self.files.get(model)
        if path is None:
            raise KeyError(f"no GGUF file is registered for {model}")
        return path

    def load(self, model: str, runner: Runner | None = None) -> None:
        """Create the model's first Llama instance with RUNNER's num_ctx, num_batch and threads."""
        path = self._path(model)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file for {model} is missing: {path}")
        loaded = LoadedModel(self.lib, path, runner or Runner())
        with self._lock:
            previous = self._models.pop(model, None)
            self._models[model] = loaded
        if previous is not None:
            previous.close()

    def unload(self, model: str) -> None:
        """Free every instance of MODEL."""
        with self._lock:
            loaded = self._models.pop(model, None)
        if loaded is not None:
            loaded.close()

    def _loaded(self, model: str) -> LoadedModel:
        with self._lock:
            loaded = self._models.get(model)
        if loaded is None:
            raise RuntimeError(f"model {model} is not loaded")
        return loaded

    def _grammar(self, format: str | Mapping[str, Any] | None) -> Any:
        if format is None:
            return None
        key = json.dumps(format, sort_keys=True)
        with self._lock:
            grammar = self._grammars.get(key)
            if grammar is not None:
                self._grammars.move_to_end(key)
                return grammar
        grammars = self.lib.llama_grammar
        try:
            if format == "json":
                grammar = grammars.LlamaGrammar.from_string(grammars.JSON_GBNF, verbose=False)
            else:
                grammar = grammars.LlamaGrammar.from_json_schema(json.dumps(format), verbose=False)
        except Exception as exc:  # the converter's own errors, whatever their type
            raise ValueError(f"invalid JSON schema in format: {exc}") from None
        with self._lock:
            self._grammars[key] = grammar
            while len(self._grammars) > _GRAMMAR_CACHE:
                self._grammars.popitem(last=False)
        return grammar

    def _fit(self, tokens: list[int], n_ctx: int) -> list[int]:
        limit = n_ctx - 1  # room for at least one generated token
        if len(tokens) <= limit:
            return tokens
        keep = min(self._num_keep, limit)
        return tokens[:keep] + tokens[len(tokens) - (limit - keep):]

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
        """Evaluate the prompt and sample the first token; the rest come from the Generation's tokens."""
        options = options or {}
        loaded = self._loaded(model)
        grammar = self._grammar(format)
        settings = sampling(options, loaded.runner.num_ctx)
        llm = loaded.checkout()
        # llama.cpp may pad its context, but llama-cpp-python's token buffers hold num_ctx.
        n_ctx = min(llm.n_ctx(), loaded.runner.num_ctx)
        try:
            tokens = self._fit(loaded.prompt_tokens(llm, prompt, system, raw), n_ctx)
            llm.set_seed(settings.seed)
            llm.last_n_tokens_size = settings.repeat_last_n
            llm.reset()  # no prefix reuse: the reply must not depend on the previous request
            steps = llm.generate(tokens, grammar=grammar, **settings.kwargs)
            # Prompt processing happens here, timed as prompt_eval_duration.
            first = loaded.compute(llm).run(next, steps)
        except BaseException:
            loaded.give_back(llm)
            raise
        context = list(tokens)
        stream = Tokens(loaded, llm, steps, first, context, should_stop, n_ctx)
        generation = Generation(prompt_eval_count=len(tokens), tokens=stream, context=context)
        stream.generation = generation
        return generation

    def embed(self, model: str, texts: Sequence[str], *, options: Mapping[str, Any] | None = None,
              truncate: bool = True) -> Embeddings:
        """Return a mean-pooled embedding per text (not yet unit length; the route scales them)."""
        loaded = self._loaded(model)
        with loaded.embed_lock:
            embedder = loaded.embedder()
            limit = min(embedder.n_ctx(), loaded.runner.num_ctx)
            if not truncate:
                for text in texts:
                    if len(embedder.tokenize(text.encode())) > limit:
                        raise ValueError("input exceeds maximum context length")
            vectors, count = loaded.compute(embedder).run(
                lambda: embedder.embed(list(texts), truncate=True, return_count=True))
        return Embeddings([list(map(float, v)) for v in vectors], int(count))

    def describe(self, model: str) -> dict[str, Any] | None:
        """Return the GGUF's chat template, license and metadata (read once, vocabulary only)."""
        path = self.files.get(model)
        if path is None or not path.is_file():
            return None
        if str(path) not in self._described:
            llm = self.lib.Llama(model_path=str(path), vocab_only=True, verbose=False)
            try:
                metadata = dict(llm.metadata)
            finally:
                llm.close()
            # As Ollama's show: no chat template or name among the key/values, numbers as numbers.
            info = {key: _typed(value) for key, value in sorted(metadata.items())
                    if key not in ("tokenizer.chat_template", "general.name")}
            self._described[str(path)] = {"template": metadata.get("tokenizer.chat_template", ""),
                                          "license": metadata.get("general.license", ""), "model_info": info}
        return self._described[str(path)]

    def _digest(self, path: Path, should_stop: ShouldStop) -> str | None:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime)
        if key not in self._digests:
            sha = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(_HASH_CHUNK):
                    if should_stop():
                        return None
                    sha.update(chunk)
            self._digests[key] = "sha256:" + sha.hexdigest()
        return self._digests[key]

    def pull(self, model: str, should_stop: ShouldStop = lambda: False) -> Iterator[dict[str, Any]]:
        """Resolve MODEL from the registered files: its one layer is the GGUF, hashed for its digest."""
        path = self.files.get(normalize_name(model))
        if path is None or not path.is_file():
            raise PullError(wire.ERR_PULL_NOT_FOUND)
        yield wire.progress("pulling manifest")
        digest = self._digest(path, should_stop)
        if digest is None:
            return
        size = path.stat().st_size
        for quarter in range(5):
            yield wire.progress(wire.pulling(digest), digest, size, size * quarter // 4)
        yield from wire.pull_epilogue()
